"""Convert one photo pair into the per-take layout (images + annotation.json)."""

from pathlib import Path

from omama.data.photos import convert_pair
from omama.logs import log_to

log_to(snakemake.log[0])
convert_pair(
    pair_dir=Path(snakemake.input.photos) / snakemake.wildcards.take,
    annotation_out=snakemake.output.annotation,
    images_out=snakemake.output.images,
    jpeg_quality=snakemake.params.jpeg_quality,
    max_side=snakemake.params.max_side,
)
