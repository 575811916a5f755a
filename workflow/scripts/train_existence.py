"""Train one experiment's existence head after its matching head, and calibrate it on validation."""

import torch

from omama.experiment import Experiment, Inputs
from omama.logs import log_to
from omama.model.existence import train_existence

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
out = snakemake.output
train_existence(
    Experiment.of(snakemake.wildcards.exp, snakemake.params.experiment),
    Inputs.of(snakemake.input),
    model_out=out.model,
    calibration_out=out.calibration,
    history_out=out.history,
)
