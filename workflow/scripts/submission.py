"""Write a challenge submission file from the named experiments' test predictions."""

from omama.logs import log_to
from omama.submission import write_submission

log_to(snakemake.log[0])
write_submission(predictions=dict(snakemake.input.items()), out=snakemake.output.submission)
