"""Render results/report.html from every stage's outputs."""
from pathlib import Path

from omama.logs import log_to
from omama.report import write_report

log_to(snakemake.log[0])
takes = [Path(p).parent.name for p in snakemake.input.annotations]
write_report(snakemake.params.report, takes, snakemake.output.html)
