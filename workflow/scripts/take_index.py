"""Select takes from the source and write the take index."""

from omama.logs import log_to
from omama.takes import build_index

log_to(snakemake.log[0])
build_index(
    snakemake.params.root,
    snakemake.params.selection,
    snakemake.output.takes,
    snakemake.params.records,
    snakemake.output.summary,
    downscaled=snakemake.params.downscaled,
    manifest=snakemake.input.get("manifest"),
)
