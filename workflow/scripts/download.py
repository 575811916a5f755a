"""Bring one take's videos from the source into its raw folder."""

from omama.data.sources import download_take
from omama.io import read_json
from omama.logs import log_to

log_to(snakemake.log[0])
download_take(
    record=read_json(snakemake.input.record, "take record"),
    source=snakemake.params.source,
    source_root=snakemake.params.root,
    out_dir=snakemake.output.raw,
)
