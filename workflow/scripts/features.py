"""Dense backbone features of one take into its Zarr v3 store."""

import torch

from omama.features.store import extract_features
from omama.logs import log_to
from omama.weights import network_timeout

log_to(snakemake.log[0])
torch.set_num_threads(snakemake.params.threads)  # config compute_threads, whatever --cores is
cfg = snakemake.params.cfg
with network_timeout(snakemake.config["network_timeout"]):  # torch hub backbones load over the network
    extract_features(
        annotation_json=snakemake.input.annotation,
        images_dir=snakemake.input.images,
        out_store=snakemake.output.store,
        backbone_cfg=cfg,
        workers=snakemake.threads,
        name=snakemake.wildcards.backbone,
    )
