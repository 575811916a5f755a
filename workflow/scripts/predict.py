"""Predict one subset with an experiment's head: submission, ground truth, per-sample table."""

import torch

from omama.evaluation.predict import predict_experiment
from omama.logs import log_to

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
inp, out = snakemake.input, snakemake.output
predict_experiment(
    split_table=inp.split,
    subset=snakemake.wildcards.subset,
    annotations=inp.annotations,
    proposals=inp.proposals,
    features=getattr(inp, "features", None),
    images=getattr(inp, "images", None),
    model_path=getattr(inp, "model", None),
    backbone_cfg=snakemake.params.backbone,
    mode=snakemake.params.mode,
    predictions_out=out.predictions,
    ground_truth_out=out.ground_truth,
    samples_out=out.samples,
    calibration=getattr(inp, "calibration", None),
    direction=snakemake.params.direction,
    exo_proposals=getattr(inp, "exo_proposals", None),
    matcher=snakemake.params.matcher,
)
