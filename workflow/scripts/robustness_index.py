"""Check the robustness photo-pair folder and list its pairs as takes."""

from omama.logs import log_to
from omama.robustness import write_index

log_to(snakemake.log[0])
write_index(folder=snakemake.input.photos, out_takes=snakemake.output.takes)
