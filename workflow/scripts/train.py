"""Train one experiment's matching head (or write its initial weights when train is null)."""

import torch

from omama.logs import log_to
from omama.model.train import train_experiment

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
inp = snakemake.input
train_experiment(
    split_table=inp.split,
    annotations=inp.annotations,
    proposals=inp.proposals,
    features=getattr(inp, "features", None),
    images=getattr(inp, "images", None),
    train_cfg=snakemake.params.experiment["train"],
    backbone_cfg=snakemake.params.backbone,
    proposer_cfg=snakemake.params.proposer,
    init_path=getattr(inp, "init", None),
    model_out=snakemake.output.model,
    history_out=snakemake.output.history,
    checkpoint_dir=snakemake.params.checkpoints,
    direction=snakemake.params.direction,
    exo_proposals=getattr(inp, "exo_proposals", None),
)
