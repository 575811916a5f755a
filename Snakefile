# omama: exo->ego object correspondence on Ego-Exo4D with O-MaMa.
# Usage: snakemake --cores 4 results/report.html
from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless --configfile names another (e.g. config.egoexo4d.yaml).
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


import omama.config
from omama import preflight  # credentials, weights, folders: warnings in a dry run, a stop before a real run

# The schema and each dataset's, backbone's and proposer's kind (plug-ins imported first): defaults filled,
# or one sentence naming the key, the rule and what the key is for.
try:
    omama.config.validate(config)
except omama.config.ConfigError as e:
    raise SystemExit(str(e))

PREFLIGHT = preflight.preflight(config)
preflight.announce(PREFLIGHT, workflow.config_settings.configfiles)


onstart:
    preflight.stop_if(PREFLIGHT)


wildcard_constraints:
    dataset=r"[^/]+",
    take=r"[^/]+",
    cam=r"[^/]+",
    backbone=r"[^/]+",
    proposer=r"[^/]+",
    exp=r"[^/]+",
    split=r"frame|take|object|official|all",
    subset=r"train|val|test",
    predictor=r"[^/]+",
    name=r"[^/]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
