"""A reference predictor (random, largest, nearest-position) on the experiments' candidates."""
from omama.logs import log_to
from omama.metrics import Bootstrap
from omama.predict import predict_reference

log_to(snakemake.log[0])
w = snakemake.wildcards
predict_reference(snakemake.input.split, w.subset, snakemake.input.annotations, snakemake.input.proposals, w.predictor,
                  snakemake.params.seed, snakemake.output.samples, snakemake.output.metrics,
                  bootstrap=Bootstrap(**snakemake.params.bootstrap), direction=snakemake.params.direction,
                  exo_proposals=getattr(snakemake.input, "exo_proposals", None))
