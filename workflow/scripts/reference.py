"""Every reference predictor (random, largest, nearest-position) on one dataset's candidates of a split's subset."""

from omama.evaluation.metrics import Bootstrap
from omama.evaluation.predict import predict_reference
from omama.logs import log_to

log_to(snakemake.log[0])
p, out = snakemake.params, snakemake.output
for predictor, samples, metrics in zip(p.predictors, out.samples, out.metrics):
    predict_reference(
        split_table=snakemake.input.split,
        subset=snakemake.wildcards.subset,
        annotations=snakemake.input.annotations,
        proposals=snakemake.input.proposals,
        predictor=predictor,
        seed=p.seed,
        samples_out=samples,
        metrics_out=metrics,
        bootstrap=Bootstrap(**p.bootstrap),
        direction=p.direction,
        exo_proposals=getattr(snakemake.input, "exo_proposals", None),
    )
