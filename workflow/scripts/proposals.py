"""Mask proposals for the ego (or every exo) camera's frames of one take, and their recall of the ground truth."""
from omama.logs import log_to
from omama.proposals import propose_take

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
propose_take(snakemake.input.annotation, snakemake.input.images, snakemake.output.proposals,
             snakemake.output.recall, cfg, device=cfg.get("device", "cpu"), view=snakemake.params.view)
