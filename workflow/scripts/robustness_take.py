"""Convert one photo pair into the per-take layout (images + annotation.json)."""

from pathlib import Path

from omama.logs import log_to
from omama.robustness import convert_pair

log_to(snakemake.log[0])
convert_pair(
    Path(snakemake.input.photos) / snakemake.wildcards.take,
    snakemake.output.annotation,
    snakemake.output.images,
    snakemake.params.jpeg_quality,
)
