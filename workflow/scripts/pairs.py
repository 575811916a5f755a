"""Build the exo->ego pairs table from every take's annotation."""

from omama.logs import log_to
from omama.pairs import write_pairs

log_to(snakemake.log[0])
write_pairs(list(snakemake.input.annotations), snakemake.input.takes, snakemake.output.pairs, snakemake.output.summary)
