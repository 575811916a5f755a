# Helpers shared by all rule files: paths, config accessors, the take list.
#
# Output layout (the contract between stages; R = config["results"]):
#   R/synthetic/...                          synthetic source (Ego-Exo4D layout) + visibility.parquet
#   R/source/{takes.json,annotations/}       metadata + annotations (egoexo source)
#   R/index/takes.json                       checkpoint: selected takes (list of records)
#   R/index/takes/{take}.json                one take's record + its raw (LZString) annotation
#   R/raw/{take}/...                         downloaded videos, temp(): deleted after extraction
#   R/frames/{take}/images/{cam}/{frame}.jpg processed frames; R/frames/{take}/annotation.json
#   R/pairs.parquet                          one row per (take, object, exo cam, frame)
#   R/splits/{split}.parquet + .json         split assignment + diagnostics; split in frame|take|object
#   R/features/{backbone}/{take}.zarr        Zarr v3 store, one array per camera
#   R/proposals/{proposer}/{take}.parquet    ego proposals (COCO RLE, box, score) + {take}.recall.parquet
#   R/experiments/{exp}/train/...            checkpoints, history.json; R/experiments/{exp}/model.pt
#   R/experiments/{exp}/{subset}/...         predictions.json, ground_truth.json, samples.parquet, metrics.json
#   R/reference/{split}/{proposer}/{subset}/{predictor}/{samples.parquet,metrics.json}
#   R/robustness/...                         robustness set: pairs, features, proposals, results
#   R/report.html
#   R/logs/..., R/benchmarks/...             one log per job, one benchmark file per job

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# Every rule names this environment, so `--sdm conda` runs the whole workflow in it.
CONDA_ENV = "../../envs/omama.yaml"


wildcard_constraints:
    take=r"[^/]+",
    cam=r"[^/]+",
    backbone=r"[^/]+",
    proposer=r"[^/]+",
    exp=r"[^/]+",
    split=r"frame|take|object",
    subset=r"train|val|test",
    predictor=r"[^/]+",


def selected_takes():
    """Take uids chosen by the take index (evaluates the checkpoint)."""
    import json

    with open(checkpoints.take_index.get().output.takes) as f:
        return [t["take_uid"] for t in json.load(f)]


def take_record(wildcards):
    """The per-take record written by the take index, as an input."""
    checkpoints.take_index.get()
    return f"{RESULTS}/index/takes/{wildcards.take}.json"


def experiment(name):
    if name not in config["experiments"]:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(config['experiments'])}")
    return config["experiments"][name]


def trained(name):
    return experiment(name).get("train") is not None


def backbone_config(name):
    if name not in config["backbones"]:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(config['backbones'])}")
    return config["backbones"][name]


def proposer_config(name):
    if name not in config["proposers"]:
        raise ValueError(f"unknown proposer {name!r}; known: {sorted(config['proposers'])}")
    return config["proposers"][name]


# Features stage (features.smk): GPU reservation and per-take aggregates.


def gpus(cfg):
    """GPUs a job reserves: 1 when its config entry asks for cuda."""
    return 1 if cfg.get("device", "cpu") == "cuda" else 0


def all_features(backbone):
    """Feature stores of every selected take for ``backbone`` (evaluates the take index)."""
    return expand(f"{RESULTS}/features/{backbone}/{{take}}.zarr", take=selected_takes())


def all_proposals(proposer):
    """Proposal tables of every selected take for ``proposer`` (evaluates the take index)."""
    return expand(f"{RESULTS}/proposals/{proposer}/{{take}}.parquet", take=selected_takes())
