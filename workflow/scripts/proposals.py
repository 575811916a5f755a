"""Mask proposals for the ego (or every exo) camera's frames of one take, and their recall of the ground truth."""

from omama.logs import log_to
from omama.proposals.proposers import make_proposer, propose_take

log_to(snakemake.log[0])
cfg = snakemake.params.cfg
propose_take(
    annotation_json=snakemake.input.annotation,
    images_dir=snakemake.input.images,
    out_proposals=snakemake.output.proposals,
    out_recall=snakemake.output.recall,
    proposer_cfg=cfg,
    view=snakemake.params.view,
    proposer=make_proposer(cfg, threads=snakemake.params.threads),  # the same proposals on any number of threads
)
