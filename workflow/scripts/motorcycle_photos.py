"""Write the Middlebury motorcycle photo pairs (masks carried by the true disparity) as a photo-pair folder."""

from omama.logs import log_to
from omama.stereo import write_motorcycle_pairs

log_to(snakemake.log[0])
write_motorcycle_pairs(snakemake.output.photos, **snakemake.params.cfg)
