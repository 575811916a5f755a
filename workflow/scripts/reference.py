"""A reference predictor (random, largest, nearest-position) on the experiments' candidates."""

from omama.evaluation.metrics import Bootstrap
from omama.evaluation.predict import predict_reference
from omama.logs import log_to

log_to(snakemake.log[0])
w = snakemake.wildcards
predict_reference(
    split_table=snakemake.input.split,
    subset=w.subset,
    annotations=snakemake.input.annotations,
    proposals=snakemake.input.proposals,
    predictor=w.predictor,
    seed=snakemake.params.seed,
    samples_out=snakemake.output.samples,
    metrics_out=snakemake.output.metrics,
    bootstrap=Bootstrap(**snakemake.params.bootstrap),
    direction=snakemake.params.direction,
    exo_proposals=getattr(snakemake.input, "exo_proposals", None),
)
