"""Bring one take's raw files from the source into its raw folder (kinds that fetch)."""

from omama.io import read_json
from omama.logs import log_to
from omama.registry import DATASETS

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
DATASETS.get(cfg["kind"]).fetch(
    cfg,
    snakemake.params.root,
    read_json(snakemake.input.record, "take record"),
    snakemake.output.raw,
    timeout=snakemake.config["network_timeout"],  # not params: it changes no output
)
