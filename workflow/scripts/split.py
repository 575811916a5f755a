"""Assign a dataset's pairs to train/val/test and write the split diagnostics."""

from omama.data.splits import required_subsets, write_split
from omama.experiment import experiments
from omama.logs import log_to

log_to(snakemake.log[0])
w, split = snakemake.wildcards, snakemake.params.split
# Read from the config, not params: naming the experiments in an error must not re-run the split.
required = required_subsets(experiments(snakemake.config), snakemake.config["evaluate"]["subsets"], w.dataset, w.split)
write_split(
    pairs_path=snakemake.input.pairs,
    strategy=w.split,
    ratios=split and split["ratios"],
    seed=split and split["seed"],
    split_out=snakemake.output.split,
    diagnostics_out=snakemake.output.diagnostics,
    required=required,
)
