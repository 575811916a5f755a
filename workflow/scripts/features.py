"""Dense backbone features of one take into its Zarr v3 store."""
from omama.features import extract_features
from omama.logs import log_to

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
extract_features(snakemake.input.annotation, snakemake.input.images, snakemake.output.store, cfg,
                 device=cfg.get("device", "cpu"), workers=snakemake.threads, name=snakemake.wildcards.backbone)
