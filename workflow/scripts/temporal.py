"""Fit an experiment's temporal memory (alpha, gamma) on the validation takes of its split."""

import torch

from omama.experiment import Experiment, Inputs
from omama.logs import log_to
from omama.model.temporal import write_memory_fit

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
write_memory_fit(
    Experiment.of(snakemake.wildcards.exp, snakemake.params.experiment), Inputs.of(snakemake.input), out=snakemake.output.fit
)
