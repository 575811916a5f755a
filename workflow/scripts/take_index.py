"""Select a dataset's takes with its kind and write the take index (every take left out counted)."""

from omama.logs import log_to
from omama.registry import DATASETS

log_to(snakemake.log[0])
cfg, out = snakemake.params.cfg, snakemake.output
DATASETS.get(cfg["kind"]).index(
    cfg, snakemake.params.root, takes_out=out.takes, records_dir=snakemake.params.records, summary_out=out.summary
)
