"""Generate the synthetic robustness photo pairs (used when robustness.path is null)."""

from omama.logs import log_to
from omama.synthetic.photos import write_photo_pairs

log_to(snakemake.log[0])
cfg = snakemake.params.photos
write_photo_pairs(
    snakemake.output.photos,
    n=snakemake.params.n,
    seed=snakemake.params.seed,
    exo_size=cfg["exo_size"],
    ego_size=cfg["ego_size"],
    jpeg_quality=cfg["jpeg_quality"],
)
