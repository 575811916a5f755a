"""Prepare a dataset's source with its kind: generated takes, photos or scenes, or downloaded metadata."""

from pathlib import Path

from omama.logs import log_to
from omama.registry import DATASETS

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
# network_timeout from the config, not params: it changes no output, so changing it must not re-run the stage.
DATASETS.get(cfg["kind"]).prepare(cfg, Path(snakemake.output.source), timeout=snakemake.config["network_timeout"])
