"""Assign the pairs to train/val/test and write the split diagnostics."""
from omama.logs import log_to
from omama.splits import write_split

log_to(snakemake.log[0])
write_split(snakemake.input.pairs, snakemake.wildcards.split, snakemake.params.ratios, snakemake.params.seed,
            snakemake.output.split, snakemake.output.diagnostics)
