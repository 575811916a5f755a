"""Decode one take's annotated frames and masks."""
from omama.extract import extract_take
from omama.io import read_json
from omama.logs import log_to

log_to(snakemake.log[0])
extract_take(read_json(snakemake.input.record, "take record"), snakemake.input.raw, snakemake.output.annotation,
             snakemake.output.images, snakemake.params.frames)
