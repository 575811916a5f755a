"""Check the robustness photo-pair folder and list its pairs as takes."""

from omama.data.photos import write_index
from omama.logs import log_to

log_to(snakemake.log[0])
write_index(folder=snakemake.input.photos, out_takes=snakemake.output.takes)
