"""Train one experiment's existence head after its matching head, and calibrate it on validation."""

import torch

from omama.logs import log_to
from omama.model.existence import train_existence

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
inp, out = snakemake.input, snakemake.output
train_existence(
    split_table=inp.split,
    annotations=inp.annotations,
    proposals=inp.proposals,
    features=getattr(inp, "features", None),
    images=getattr(inp, "images", None),
    model_path=inp.model,
    backbone_cfg=snakemake.params.backbone,
    mode=snakemake.params.mode,
    settings=snakemake.params.settings,
    model_out=out.model,
    calibration_out=out.calibration,
    history_out=out.history,
    direction=snakemake.params.direction,
    exo_proposals=getattr(inp, "exo_proposals", None),
)
