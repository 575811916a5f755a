"""Predict one subset with an experiment's head: submission, ground truth, per-sample table."""
import torch

from omama.logs import log_to
from omama.predict import predict_experiment

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out = snakemake.input, snakemake.output
predict_experiment(inp.split, snakemake.wildcards.subset, inp.annotations, inp.proposals, getattr(inp, "features", None),
                   getattr(inp, "images", None), inp.model, snakemake.params.backbone, snakemake.params.mode,
                   out.predictions, out.ground_truth, out.samples, direction=snakemake.params.direction,
                   exo_proposals=getattr(inp, "exo_proposals", None))
