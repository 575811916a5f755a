"""Decode one take's annotated frames and masks."""

from omama.data.extract import extract_take
from omama.io import read_json
from omama.logs import log_to

log_to(snakemake.log[0])
extract_take(
    record=read_json(snakemake.input.record, "take record"),
    raw_root=snakemake.input.raw,
    annotation_out=snakemake.output.annotation,
    images_out=snakemake.output.images,
    frames_cfg=snakemake.params.frames,
)
