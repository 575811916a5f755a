"""Render results/report.html from its declared inputs (every stage's results and timings)."""

from omama.logs import log_to
from omama.report.build import write_report

log_to(snakemake.log[0])
write_report(
    params=snakemake.params.report,
    inputs={kind: list(paths) for kind, paths in snakemake.input.items() if kind != "settings"},
    out=snakemake.output.html,
)
