"""Predict one subset of a dataset with an experiment's head: submission, ground truth, per-sample table."""

import torch

from omama.evaluation.predict import predict_experiment
from omama.experiment import Experiment, Inputs
from omama.logs import log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
out = snakemake.output
predict_experiment(
    Experiment.of(snakemake.wildcards.exp, snakemake.params.experiment),
    Inputs.of(snakemake.input),
    subset=snakemake.wildcards.subset,
    predictions_out=out.predictions,
    ground_truth_out=out.ground_truth,
    samples_out=out.samples,
)
