# omama: exo->ego object correspondence on Ego-Exo4D with O-MaMa.
# Usage: snakemake --cores 4 results/report.html
from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default, unless --configfile names another (e.g. config.egoexo4d.yaml).
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


from omama import (
    preflight,
)  # credentials, weights, folders: warnings in a dry run, a stop before a real run

try:
    validate(config, "workflow/schemas/config.schema.yaml")
except Exception:  # say which key breaks which rule (jsonschema's first error often does not)
    raise SystemExit(preflight.schema_problem(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml"))

PREFLIGHT = preflight.preflight(config)
preflight.announce(PREFLIGHT, workflow.config_settings.configfiles)


onstart:
    preflight.stop_if(PREFLIGHT)


wildcard_constraints:
    take=r"[^/]+",
    cam=r"[^/]+",
    backbone=r"[^/]+",
    proposer=r"[^/]+",
    exp=r"[^/]+",
    split=r"frame|take|object|official",
    subset=r"train|val|test",
    predictor=r"[^/]+",
    name=r"[^/]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
