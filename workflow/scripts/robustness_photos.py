"""Generate the synthetic robustness photo pairs (used when robustness.path is null)."""
from omama.logs import log_to
from omama.synthetic import write_photo_pairs

log_to(snakemake.log[0])
write_photo_pairs(snakemake.output.photos, snakemake.params.n, snakemake.params.seed)
