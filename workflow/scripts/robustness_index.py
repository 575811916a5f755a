"""Check the robustness photo-pair folder and list its pairs as takes."""

from omama.logs import log_to
from omama.robustness import write_index

log_to(snakemake.log[0])
write_index(snakemake.input.photos, snakemake.output.takes)
