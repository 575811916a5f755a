"""One take into the per-take layout (annotation.json, images/<cam>/<frame>.jpg) with its dataset's kind."""

from omama.io import read_json
from omama.logs import log_to
from omama.registry import DATASETS

log_to(snakemake.log[0])
cfg, out = snakemake.params.cfg, snakemake.output
DATASETS.get(cfg["kind"]).extract(
    cfg,
    snakemake.params.root,
    read_json(snakemake.input.record, "take record"),
    snakemake.input.raw[0] if snakemake.input.raw else None,
    annotation_out=out.annotation,
    images_out=out.images,
)
