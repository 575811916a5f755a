"""Fetch Ego-Exo4D metadata, annotations and the video part's manifest with the `egoexo` client."""

from pathlib import Path

from omama.data.sources import fetch_metadata
from omama.logs import log_to

log_to(snakemake.log[0])
# network_timeout from the config, not params: it changes no output, so changing it must not re-run the stage.
fetch_metadata(
    out_dir=Path(snakemake.output.takes).parent,
    cfg=snakemake.params.cfg,
    timeout=snakemake.config["network_timeout"],
    splits=snakemake.params.splits,
)
