# Shared helpers for the workflow: the results layout, config accessors, the take list.
# Every results path comes from omama.layout (its docstring draws the tree); L is the main run's.

import omama.config
import omama.io
from omama import layout
from omama.layout import Layout
from omama.report import ReportParams, report_inputs

RESULTS = config["results"]
L = Layout(RESULTS)
# The results tree of a photo-pair set, with {rset} (robustness, motorcycle) as a wildcard.
PHOTO = L.photo_set()
# Every rule names this environment, so `--sdm conda` runs the whole workflow in it.
CONDA_ENV = "../../envs/omama.yaml"


_TAKES = {}

# torchvision's checkpoint cache, the Hugging Face hub's timeouts and sleeping OpenMP threads for every
# job (jobs inherit the environment, on SLURM too).
omama.config.apply_environment(config)

# Threads of every numeric job: fixed by the config, so that the numbers do not depend on --cores.
COMPUTE_THREADS = config["compute_threads"]



def settings(unit, params):
    """Input function: the settings record L.params(unit) ({wildcards} filled) of a rule's ``params`` (values,
    or functions of the wildcards). It changes, and so re-runs the job and what depends on it, exactly when
    those settings change, whether or not Snakemake's own records in .snakemake/ know the outputs (a
    results folder copied from elsewhere or made by another clone)."""

    def record(wc):
        if PREFLIGHT:  # the run stops before its first job: it reads no settings and writes no record
            return []
        path = L.params(unit.format(**dict(wc.items())))
        if path not in _RECORDED:  # once per record and process: the config does not change meanwhile
            value = {k: v(wc) if callable(v) else v for k, v in params.items()}
            preview = workflow.executor_plugin is None or workflow.dryrun  # -n, --summary: the records stay
            _RECORDED[path] = omama.io.write_record(path, value, preview=preview)
        return _RECORDED[path]

    return record


_RECORDED = {}  # settings record -> the path its jobs read (the record, or its preview in a dry run)


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
    return L.take_record(wildcards.take)


def experiment(name):
    if name not in config["experiments"]:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(config['experiments'])}")
    return config["experiments"][name]


def direction(name):
    """exo2ego or ego2exo (the schema fills the default, exo2ego)."""
    return experiment(name)["direction"]


def trained(name):
    return experiment(name)["train"] is not None


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
        raise ValueError(
            f"robustness.experiments lists {_name!r}, an {direction(_name)} experiment; "
            f"the photo-pair sets are scored exo->ego only"
        )


# Features stage (features.smk): GPU reservation and per-take aggregates.


def weights_record(backbone):
    """The pretrained-weights record a backbone needs first (torch_weights rule: torchvision weights, or a
    resnet50-dino URL, fetched on the submitting host); else none."""
    cfg = backbone_config(backbone)
    fetched = (cfg["kind"] == "torchvision" and cfg["weights"] != "untrained") or (
        cfg["kind"] == "resnet50-dino" and cfg["weights"].startswith(("http://", "https://"))
    )
    return [L.weights(backbone)] if fetched else []


def proposer_weights_record(proposer):
    """The checkpoint record a sam proposer with a packaged checkpoint needs first (proposer_weights rule); else none."""
    cfg = proposer_config(proposer)
    if cfg["kind"] != "sam":
        return []
    from omama.weights import PACKAGED  # imports torch: only for sam proposers

    return [L.proposer_weights(proposer)] if cfg["weights"] in PACKAGED else []


def gpus(cfg):
    """GPUs a job reserves: 1 when its config entry asks for cuda."""
    return 1 if cfg["device"] == "cuda" else 0


def all_proposals(proposer):
    """Proposal tables of every selected take for ``proposer`` (evaluates the take index)."""
    return take_files(L.proposals(proposer))


# Photo-pair sets (robustness.smk) and the report (report.smk).

PHOTOS = config["robustness"]["path"] or L.photo_set("robustness").photos()
ROBUSTNESS_ON = bool(config["robustness"]["experiments"]) and bool(
    config["robustness"]["path"] or config["robustness"]["synthetic_pairs"] > 0
)
MOTORCYCLE_ON = bool(config["robustness"]["experiments"]) and config["robustness"]["motorcycle"] is not None
# Photo-pair sets, each with its own results tree R/{rset}/: name -> folder of pairs.
PHOTO_SETS = {
    **({"robustness": PHOTOS} if ROBUSTNESS_ON else {}),
    **({"motorcycle": L.photo_set("motorcycle").photos()} if MOTORCYCLE_ON else {}),
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
    """What ``predict`` reads for an experiment on a photo-pair set: its inputs there, and its head
    from the main run (with an existence head, that head and its calibration)."""
    return {
        **model_inputs(
            wc,
            layout=L.photo_set(wc.rset),
            takes=robustness_pairs(wc.rset),
            split="take",
        ),
        **predicted_model(wc),
    }


def report_files(wc):
    """Every file the report reads (evaluates the take index and the photo-pair indexes): the results
    by kind (omama.report.report_inputs) and the timing files of the jobs behind them.
    """
    takes = selected_takes()
    pairs = {rset: robustness_pairs(rset) for rset in PHOTO_SETS}
    files = report_inputs(
        ReportParams.from_dict(report_params()),
        takes,
        pairs.get("robustness"),
        pairs.get("motorcycle"),
    )
    return {**files, "benchmarks": job_benchmarks(takes, pairs)}


def job_benchmarks(takes, pairs):
    """Benchmark files of the jobs the report times: every job of the main run and of the photo-pair
    sets (``pairs``: set -> pair names) that the report depends on. A download's timing file outlives
    its temporary raw videos, so asking for it re-runs nothing.
    """
    exps = config["experiments"]
    subsets = config["evaluate"]["subsets"]
    refs = config["evaluate"]["references"]
    used = lambda key, names=exps: sorted({exps[e][key] for e in names})
    bench = lambda rule, **wc: expand(getattr(rules, rule).benchmark, **wc)
    files = [
        *bench("take_index"),
        *bench("download", take=takes),
        *bench("extract", take=takes),
        *bench("pairs"),
        *bench("split", split=used("split")),
        *bench("features", backbone=used("backbone"), take=takes),
        *bench("proposals", proposer=used("proposer"), take=takes),
        *bench("train", exp=list(exps)),
        *bench("predict", exp=list(exps), subset=subsets),
        *bench("evaluate", exp=list(exps), subset=subsets),
        *bench("torch_weights", backbone=[b for b in used("backbone") if weights_record(b)]),
        *bench("proposer_weights", proposer=[p for p in used("proposer") if proposer_weights_record(p)]),
        *(bench("synthesize") if config["source"]["kind"] == "synthetic" else []),
        *(bench("fetch_metadata") if config["source"]["kind"] == "egoexo" else []),
    ]
    for x in {(e["split"], e["proposer"]) for e in exps.values()}:
        files += bench("reference", split=x[0], proposer=x[1], subset=subsets, predictor=refs)
    robust = config["robustness"]["experiments"]
    stored = [e for e in robust if feature_mode(e) == "pre-extracted"]
    for rset, names in pairs.items():
        generated = rset == "motorcycle" or not config["robustness"]["path"]
        files += [
            *(bench(f"{rset}_photos") if generated else []),
            *bench("robustness_index", rset=rset),
            *bench("robustness_take", rset=rset, take=names),
            *bench(
                "robustness_features",
                rset=rset,
                backbone=used("backbone", stored),
                take=names,
            ),
            *bench(
                "robustness_proposals",
                rset=rset,
                proposer=used("proposer", robust),
                take=names,
            ),
            *bench("robustness_pairs", rset=rset),
            *bench("robustness_split", rset=rset, split="take"),
            *bench("robustness_predict", rset=rset, exp=robust, subset="test"),
            *bench("robustness_evaluate", rset=rset, exp=robust, subset="test"),
            *bench(
                "robustness_reference",
                rset=rset,
                split="take",
                proposer=used("proposer", robust),
                subset="test",
                predictor=refs,
            ),
        ]
    return sorted(set(files))


# Model stage (model.smk): training inputs, initial weights, metric targets.


def feature_mode(name):
    """How an experiment gets backbone features: its train setting; untrained heads read the stores."""
    e = experiment(name)
    return e["train"]["features"] if e["train"] else "pre-extracted"


def take_files(pattern, takes=None):
    """``pattern`` with {take} filled for each take (default: the selected takes)."""
    return expand(pattern, take=selected_takes() if takes is None else takes)


def model_inputs(wc, layout=L, takes=None, split=None):
    """Split table, annotations, proposals and features (or frames) an experiment reads in ``layout``."""
    e = experiment(wc.exp)
    files = {
        "split": layout.split(split or e["split"]),
        "annotations": take_files(layout.annotation(), takes),
        "proposals": take_files(layout.proposals(e["proposer"]), takes),
    }
    if direction(wc.exp) == "ego2exo":
        files["exo_proposals"] = take_files(layout.exo_proposals(e["proposer"]), takes)
    if feature_mode(wc.exp) == "on-the-fly":
        files["images"] = take_files(layout.images(), takes)
        files["weights"] = weights_record(e["backbone"])
    else:
        files["features"] = take_files(layout.features(e["backbone"]), takes)
    return files


def init_weights(name):
    """The initial-weights file of an experiment: another experiment's model.pt, a path, or none."""
    init = experiment(name)["init"]
    if init == "none":
        return {}
    if init.startswith("experiment:"):
        other = init.split(":", 1)[1]
        experiment(other)
        if other == name:
            raise ValueError(f"experiment {name!r} cannot start from its own weights")
        return {"init": L.model(other)}
    return {"init": init}


def train_inputs(wc):
    return {**model_inputs(wc), **init_weights(wc.exp)}


def matching_settings(name):
    """The settings an experiment's matching head depends on: not its existence head's, so that
    changing those retrains only the existence head."""
    return {k: v for k, v in experiment(name).items() if k not in ("existence", "existence_train")}


def predicted_model(wc):
    """The head ``predict`` uses: the matching head, or (existence: head) the head with its trained
    existence MLP and the calibration of its confidence."""
    if experiment(wc.exp)["existence"] == "head":
        return {"model": L.existence("model.pt", wc.exp), "calibration": L.existence("calibration.json", wc.exp)}
    return {"model": L.model(wc.exp)}


def experiment_gpus(wc):
    return gpus(backbone_config(experiment(wc.exp)["backbone"]))
