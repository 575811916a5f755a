"""Write a challenge submission file from the named experiments' test predictions."""

from omama.evaluation.submission import write_submission
from omama.logs import log_to

log_to(snakemake.log[0])
write_submission(predictions=dict(snakemake.input.items()), out=snakemake.output.submission)
