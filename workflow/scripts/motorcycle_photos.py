"""Write the Middlebury motorcycle photo pairs (masks carried by the true disparity) as a photo-pair folder."""

from omama.data.stereo import write_motorcycle_pairs
from omama.logs import log_to

log_to(snakemake.log[0])
write_motorcycle_pairs(snakemake.output.photos, **snakemake.params.cfg)
