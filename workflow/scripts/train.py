"""Train one experiment's matching head (or write its initial weights when train is null)."""
import torch

from omama.logs import log_to
from omama.train import train_experiment

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp = snakemake.input
train_experiment(inp.split, inp.annotations, inp.proposals, getattr(inp, "features", None), getattr(inp, "images", None),
                 snakemake.params.experiment.get("train"), snakemake.params.backbone, getattr(inp, "init", None),
                 snakemake.output.model, snakemake.output.history, snakemake.params.checkpoints,
                 proposer_cfg=snakemake.params.proposer, direction=snakemake.params.direction,
                 exo_proposals=getattr(inp, "exo_proposals", None))
