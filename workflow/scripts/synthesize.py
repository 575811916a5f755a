"""Rule synthesize: write the synthetic Ego-Exo4D-layout dataset (see omama.synthetic)."""

from pathlib import Path

from omama.logs import log_to
from omama.synthetic.dataset import generate_dataset

log_to(snakemake.log[0])
generate_dataset(Path(snakemake.output.takes).parent, snakemake.params.cfg)
