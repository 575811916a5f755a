"""Select takes from the source and write the take index."""

from omama.data.takes import build_index
from omama.logs import log_to

log_to(snakemake.log[0])
build_index(
    source_root=snakemake.params.root,
    selection=snakemake.params.selection,
    takes_out=snakemake.output.takes,
    records_dir=snakemake.params.records,
    summary_out=snakemake.output.summary,
    downscaled=snakemake.params.downscaled,
    manifest=snakemake.input.get("manifest"),
)
