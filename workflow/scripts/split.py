"""Assign the pairs to train/val/test and write the split diagnostics."""

from omama.logs import log_to
from omama.splits import required_subsets, write_split

log_to(snakemake.log[0])
# Read from the config, not params: naming the experiments in an error must not re-run the split.
cfg = snakemake.config
required = (
    required_subsets(cfg["experiments"], cfg["evaluate"]["subsets"], snakemake.wildcards.split)
    if snakemake.rule == "split"
    else None
)  # the robustness set puts every pair in test
write_split(
    snakemake.input.pairs,
    snakemake.wildcards.split,
    snakemake.params.ratios,
    snakemake.params.seed,
    snakemake.output.split,
    snakemake.output.diagnostics,
    required=required,
)
