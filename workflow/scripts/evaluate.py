"""Score a submission file against its ground-truth file with the official metrics."""

from omama.evaluation.metrics import Bootstrap, write_metrics
from omama.logs import log_to

log_to(snakemake.log[0])
write_metrics(
    snakemake.input.predictions,
    snakemake.input.ground_truth,
    snakemake.output.metrics,
    bootstrap=Bootstrap(**snakemake.params.bootstrap),
)
