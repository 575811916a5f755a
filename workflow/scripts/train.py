"""Train one experiment's matching head (or write its initial weights when train is null)."""

import torch

from omama.experiment import Experiment, Inputs
from omama.logs import log_to
from omama.model.train import train_experiment

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
train_experiment(
    Experiment.of(snakemake.wildcards.exp, snakemake.params.experiment),
    Inputs.of(snakemake.input),
    model_out=snakemake.output.model,
    history_out=snakemake.output.history,
    checkpoint_dir=snakemake.params.checkpoints,
)
