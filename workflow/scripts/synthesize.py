"""Rule synthesize: write the synthetic Ego-Exo4D-layout dataset (see omama.synthetic)."""

import logging
import sys
from pathlib import Path

from omama.synthetic.dataset import generate_dataset

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    generate_dataset(Path(snakemake.output.takes).parent, snakemake.params.cfg)
