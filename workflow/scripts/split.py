"""Assign the pairs to train/val/test and write the split diagnostics."""

from omama.data.splits import required_subsets, write_split
from omama.logs import log_to

log_to(snakemake.log[0])
# Read from the config, not params: naming the experiments in an error must not re-run the split.
cfg = snakemake.config
required = (
    required_subsets(cfg["experiments"], cfg["evaluate"]["subsets"], snakemake.wildcards.split)
    if snakemake.rule == "split"
    else None
)  # the robustness set puts every pair in test
write_split(
    pairs_path=snakemake.input.pairs,
    strategy=snakemake.wildcards.split,
    ratios=snakemake.params.ratios,
    seed=snakemake.params.seed,
    split_out=snakemake.output.split,
    diagnostics_out=snakemake.output.diagnostics,
    required=required,
)
