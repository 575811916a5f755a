# Shared helpers for the workflow: paths, config accessors, the take list.
#
# Output layout (the contract between stages; R = config["results"]):
#   R/synthetic/...                          synthetic source (Ego-Exo4D layout) + visibility.parquet
#   R/source/{takes.json,annotations/}       metadata + annotations (egoexo source) + manifest.json (video sizes)
#   R/index/takes.json                       checkpoint: selected takes (list of records, without masks)
#   R/index/summary.json                     takes left out of the index, counted by reason
#   R/index/takes/{take}.json                one take's record + its raw (LZString) annotation
#   R/raw/{take}/...                         downloaded videos, temp(): deleted after extraction
#   R/frames/{take}/images/{cam}/{frame}.jpg processed frames; R/frames/{take}/annotation.json
#   R/pairs.parquet                          one row per (take, object, exo cam, frame); R/pairs.json: counts + skips
#   R/splits/{split}.parquet + .json         split assignment + diagnostics; split in frame|take|object
#   R/weights/{backbone}.json                torchvision backbones: checkpoint file, SHA-256, where it came from
#   R/features/{backbone}/{take}.zarr        Zarr v3 store, one array per camera
#   R/proposals/{proposer}/{take}.parquet    ego proposals (COCO RLE, box, score) + {take}.recall.parquet
#   R/experiments/{exp}/train/...            checkpoints, history.json; R/experiments/{exp}/model.pt
#   R/experiments/{exp}/{subset}/...         predictions.json, ground_truth.json, samples.parquet, metrics.json
#   R/reference/{split}/{proposer}/{subset}/{predictor}/{samples.parquet,metrics.json}
#   R/robustness/...                         robustness set: pairs, features, proposals, results, references
#   R/motorcycle/...                         the same for the Middlebury motorcycle photo pairs (photos/ generated)
#   R/report.html
#   R/logs/..., R/benchmarks/...             one log per job, one benchmark file per job

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# Every rule names this environment, so `--sdm conda` runs the whole workflow in it.
CONDA_ENV = "../../envs/omama.yaml"


_TAKES = {}

# torchvision's checkpoint cache for every job (jobs inherit the environment, on SLURM too).
if config["torch_home"]:
    os.environ["TORCH_HOME"] = os.path.abspath(config["torch_home"])


def index_records():
    """Lean records of the takes chosen by the take index, by uid (evaluates the checkpoint;
    read once per index version)."""
    import json

    path = checkpoints.take_index.get().output.takes
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _TAKES:
        with open(path) as f:
            _TAKES.clear()
            _TAKES[key] = {t["take_uid"]: t for t in json.load(f)}
    return _TAKES[key]


def selected_takes():
    """Take uids chosen by the take index."""
    return list(index_records())


def source_videos(wildcards):
    """A local source's videos of the take: replacing one re-extracts the take (the copy under
    raw/ is temporary, so it cannot carry the change)."""
    if config["source"]["kind"] != "local":
        return []
    return [f"{SOURCE_ROOT}/{rel}" for rel in index_records()[wildcards.take]["videos"].values()]


def take_record(wildcards):
    """The per-take record written by the take index, as an input."""
    checkpoints.take_index.get()
    return f"{RESULTS}/index/takes/{wildcards.take}.json"


def experiment(name):
    if name not in config["experiments"]:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(config['experiments'])}")
    return config["experiments"][name]


def direction(name):
    """exo2ego or ego2exo (the schema's default, exo2ego, when the experiment does not say)."""
    return experiment(name).get("direction", "exo2ego")


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


# The photo-pair sets are exo->ego only (they have no exo proposals).
for _name in config["robustness"]["experiments"]:
    if direction(_name) != "exo2ego":
        raise ValueError(f"robustness.experiments lists {_name!r}, an {direction(_name)} experiment; "
                         f"the photo-pair sets are scored exo->ego only")


# Features stage (features.smk): GPU reservation and per-take aggregates.


def weights_record(backbone):
    """The pretrained-weights record a torchvision backbone needs first (torch_weights rule); else none."""
    cfg = backbone_config(backbone)
    return [f"{RESULTS}/weights/{backbone}.json"] if cfg["kind"] == "torchvision" and cfg["weights"] != "untrained" else []


def gpus(cfg):
    """GPUs a job reserves: 1 when its config entry asks for cuda."""
    return 1 if cfg.get("device", "cpu") == "cuda" else 0


def all_features(backbone):
    """Feature stores of every selected take for ``backbone`` (evaluates the take index)."""
    return take_files(f"{RESULTS}/features/{backbone}/{{take}}.zarr")


def all_proposals(proposer):
    """Proposal tables of every selected take for ``proposer`` (evaluates the take index)."""
    return take_files(f"{RESULTS}/proposals/{proposer}/{{take}}.parquet")


# Report and robustness set (report.smk).

ROBUST = f"{RESULTS}/robustness"
PHOTOS = config["robustness"]["path"] or f"{ROBUST}/photos"
ROBUSTNESS_ON = bool(config["robustness"]["experiments"]) and bool(
    config["robustness"]["path"] or config["robustness"]["synthetic_pairs"] > 0
)
MOTORCYCLE_ON = bool(config["robustness"]["experiments"]) and config["robustness"]["motorcycle"] is not None
# Photo-pair sets, each with its own results tree R/{rset}/: name -> folder of pairs.
PHOTO_SETS = {
    **({"robustness": PHOTOS} if ROBUSTNESS_ON else {}),
    **({"motorcycle": f"{RESULTS}/motorcycle/photos"} if MOTORCYCLE_ON else {}),
}


def pair_files(wildcards):
    """The files of one user photo pair: editing a photo or mask re-converts that pair (the
    folder's own time does not change when a file inside a pair does). Generated pairs change
    only with their rule's settings."""
    from pathlib import Path

    if wildcards.rset != "robustness" or not config["robustness"]["path"]:
        return []
    return sorted(str(p) for p in Path(PHOTOS, wildcards.take).rglob("*") if p.is_file())


def robustness_pairs(rset="robustness"):
    """Pair names of a photo-pair set (evaluates its index checkpoint)."""
    import json

    with open(checkpoints.robustness_index.get(rset=rset).output.takes) as f:
        return [t["take_uid"] for t in json.load(f)]


def report_params():
    return dict(
        results=RESULTS,
        source_kind=config["source"]["kind"],
        experiments=config["experiments"],
        backbones=config["backbones"],
        proposers=config["proposers"],
        subsets=config["evaluate"]["subsets"],
        references=config["evaluate"]["references"],
        compare=config["report"]["compare"],
        overlays=config["report"]["overlays"],
        robustness_experiments=config["robustness"]["experiments"],
        robustness_enabled=ROBUSTNESS_ON,
        bootstrap=bootstrap_config(),
        motorcycle_enabled=MOTORCYCLE_ON,
    )


def bootstrap_config():
    """The bootstrap settings the metrics and the report use (seeded by evaluate.seed)."""
    return dict(config["evaluate"]["bootstrap"], seed=config["evaluate"]["seed"])


def robustness_model_inputs(wc):
    """What ``predict`` reads for an experiment on the robustness set (its head from the main run)."""
    return {
        **model_inputs(wc, root=f"{RESULTS}/{wc.rset}", takes=robustness_pairs(wc.rset), split="take"),
        "model": f"{RESULTS}/experiments/{wc.exp}/model.pt",
    }


def report_files(wc):
    """Every result the report reads (evaluates the take index and the robustness index)."""
    pairs = robustness_pairs() if ROBUSTNESS_ON else None
    from omama.report import ReportParams, report_inputs  # heavy (matplotlib): only when the report is planned

    return report_inputs(ReportParams.from_dict(report_params()), selected_takes(), pairs,
                         robustness_pairs("motorcycle") if MOTORCYCLE_ON else None)


# Model stage (model.smk): training inputs, initial weights, metric targets.


def feature_mode(name):
    """How an experiment gets backbone features: its train setting; untrained heads read the stores."""
    e = experiment(name)
    return e["train"].get("features", "pre-extracted") if e.get("train") else "pre-extracted"


def take_files(pattern, takes=None):
    """``pattern`` with {take} filled for each take (default: the selected takes)."""
    return expand(pattern, take=selected_takes() if takes is None else takes)


def model_inputs(wc, root=RESULTS, takes=None, split=None):
    """Split table, annotations, proposals and features (or frames) an experiment reads under ``root``."""
    e = experiment(wc.exp)
    per_take = lambda pattern: take_files(f"{root}/{pattern}", takes)
    files = {
        "split": f"{root}/splits/{split or e['split']}.parquet",
        "annotations": per_take("frames/{take}/annotation.json"),
        "proposals": per_take(f"proposals/{e['proposer']}/{{take}}.parquet"),
    }
    if direction(wc.exp) == "ego2exo":
        files["exo_proposals"] = per_take(f"proposals/{e['proposer']}/exo/{{take}}.parquet")
    if feature_mode(wc.exp) == "on-the-fly":
        files["images"] = per_take("frames/{take}/images")
        files["weights"] = weights_record(e["backbone"])
    else:
        files["features"] = per_take(f"features/{e['backbone']}/{{take}}.zarr")
    return files


def init_weights(name):
    """The initial-weights file of an experiment: another experiment's model.pt, a path, or none."""
    init = experiment(name).get("init", "none")
    if init == "none":
        return {}
    if init.startswith("experiment:"):
        other = init.split(":", 1)[1]
        experiment(other)
        if other == name:
            raise ValueError(f"experiment {name!r} cannot start from its own weights")
        return {"init": f"{RESULTS}/experiments/{other}/model.pt"}
    return {"init": init}


def train_inputs(wc):
    return {**model_inputs(wc), **init_weights(wc.exp)}


def experiment_gpus(wc):
    return gpus(backbone_config(experiment(wc.exp)["backbone"]))

