"""Collect the timing (benchmark file) of every job of the workflow's rules that ran for this config."""

from omama.logs import log_to
from omama.report.timing import collect

log_to(snakemake.log[0])
collect(
    benchmarks=snakemake.params.benchmarks,
    patterns=snakemake.params.patterns,
    known=snakemake.params.known,
    out=snakemake.output.timing,
)
