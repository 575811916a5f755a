"""Build the exo->ego pairs table from every take's annotation."""

from omama.data.pairs import write_pairs
from omama.logs import log_to

log_to(snakemake.log[0])
write_pairs(
    annotation_paths=list(snakemake.input.annotations),
    takes_index=snakemake.input.takes,
    pairs_out=snakemake.output.pairs,
    summary_out=snakemake.output.summary,
)
