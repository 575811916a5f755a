# Shared helpers for the workflow: the results layout, the resolved experiments, the datasets' kinds and
# takes, and the input functions the rules share. Every results path comes from omama.layout.

import omama.config
import omama.io
from omama.experiment import Inputs, experiments
from omama.layout import Layout
from omama.registry import BACKBONES, DATASETS, PROPOSERS
from omama.report import ReportParams, report_inputs

RESULTS = config["results"]
L = Layout(RESULTS)
D = L.data()  # a dataset's tree, {dataset} a wildcard
# Every rule names this environment, so `--sdm conda` runs the whole workflow in it.
CONDA_ENV = "../../envs/omama.yaml"
# Every experiment as the config defines it, resolved once (omama.experiment). A name it cannot resolve
# is a preflight problem, already announced.
try:
    EXPERIMENTS = experiments(config)
except ValueError as e:
    raise SystemExit(f"config error: {e}")

# torchvision's checkpoint cache, the Hugging Face hub's timeouts and sleeping OpenMP threads for every
# job (jobs inherit the environment, on SLURM too), and the plug-ins every job imports.
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


# Datasets: their kinds, prepared sources and take indexes.


def dataset_cfg(name):
    if name not in config["datasets"]:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(config['datasets'])}")
    return config["datasets"][name]


def kind(name):
    """The dataset kind of a dataset (omama.data.kinds, or a plug-in's)."""
    return DATASETS.get(dataset_cfg(name)["kind"])


def dataset_settings(stage):
    """A data stage's params: the settings of the job's dataset that the stage reads (its kind's ``reads``), so
    that changing another setting (a split seed) leaves the stage's outputs alone."""
    return dict(cfg=lambda wc: kind(wc.dataset).settings(dataset_cfg(wc.dataset), stage))


def source_root(name):
    """The folder the take index of a dataset reads: its prepared source, or the user's path."""
    return kind(name).root(dataset_cfg(name), L.data(name).source())


_TAKES = {}


def index_records(dataset):
    """Lean records of the takes the take index of ``dataset`` chose, by uid (evaluates its checkpoint;
    read once per index version)."""
    import json

    path = checkpoints.take_index.get(dataset=dataset).output.takes
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _TAKES:
        with open(path) as f:
            _TAKES[key] = {t["take_uid"]: t for t in json.load(f)}
    return _TAKES[key]


def selected_takes(dataset):
    """Take uids of ``dataset`` chosen by its take index."""
    return list(index_records(dataset))


def take_files(pattern, dataset, takes=None):
    """``pattern`` with {dataset} and {take} filled for each take (default: the selected takes)."""
    return expand(pattern, dataset=dataset, take=selected_takes(dataset) if takes is None else takes)


def take_record(wc):
    """The per-take record written by the take index, as an input."""
    checkpoints.take_index.get(dataset=wc.dataset)
    return L.data(wc.dataset).take_record(wc.take)


def raw_take(wc):
    """The take's downloaded raw files (kinds that fetch), else nothing: extraction reads the source."""
    return [L.data(wc.dataset).raw(wc.take)] if kind(wc.dataset).fetches else []


def take_inputs(wc):
    """The source files of one take whose change re-extracts it (a local video, a user's photo or mask)."""
    return kind(wc.dataset).take_inputs(dataset_cfg(wc.dataset), source_root(wc.dataset), index_records(wc.dataset)[wc.take])


# Backbones and proposers: their kinds, weights and GPUs.


def backbone_config(name):
    if name not in config["backbones"]:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(config['backbones'])}")
    return config["backbones"][name]


def proposer_config(name):
    if name not in config["proposers"]:
        raise ValueError(f"unknown proposer {name!r}; known: {sorted(config['proposers'])}")
    return config["proposers"][name]


def weights_record(backbone):
    """The pretrained-weights record a backbone needs first when its kind fetches its weights (torch_weights
    rule, on the submitting host); else none."""
    cfg = backbone_config(backbone)
    return [L.weights(backbone)] if BACKBONES.get(cfg["kind"]).fetches(cfg) else []


def proposer_weights_record(proposer):
    """The checkpoint record a proposer needs first when its kind fetches one (proposer_weights rule); else none."""
    cfg = proposer_config(proposer)
    return [L.proposer_weights(proposer)] if PROPOSERS.get(cfg["kind"]).fetches(cfg) else []


def gpus(cfg):
    """GPUs a job reserves: 1 when its config entry asks for cuda."""
    return 1 if cfg["device"] == "cuda" else 0


# Experiments: what each stage of one reads.


def experiment(name):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def inputs(wc, stage, dataset=None):
    """The files ``stage`` (train, existence, predict) of an experiment reads (omama.experiment.Inputs), and for
    features computed on the fly the backbone's weights record."""
    x = experiment(wc.exp)
    dataset = dataset or wc.dataset
    files = Inputs.from_layout(L, x, dataset, selected_takes(dataset), stage).files()
    return {**files, "weights": weights_record(x.backbone_name)} if x.on_the_fly else files


def train_inputs(wc):
    return inputs(wc, "train", experiment(wc.exp).dataset)


def existence_inputs(wc):
    return inputs(wc, "existence", experiment(wc.exp).dataset)


def temporal_inputs(wc):
    return inputs(wc, "temporal", experiment(wc.exp).dataset)


def predict_inputs(wc):
    return inputs(wc, "predict")


def experiment_gpus(wc):
    return gpus(experiment(wc.exp).backbone)


def submission_inputs(wc):
    """The test predictions of the experiments a challenge submission names, by direction."""
    if wc.name not in config["submissions"]:
        raise ValueError(f"unknown submission {wc.name!r}; known: {sorted(config['submissions'])}")
    return {
        d: L.result("predictions.json", exp, experiment(exp).dataset, "test")
        for d, exp in config["submissions"][wc.name].items()
    }


# What a run makes: the (dataset, ...) combinations the experiments need.


def evaluations():
    """(experiment, dataset, split, subsets) of every prediction the run makes."""
    subsets = config["evaluate"]["subsets"]
    return [(x, d, x.split_on(d), x.subsets_on(d, subsets)) for x in EXPERIMENTS.values() for d in x.evaluate_on]


def bootstrap_config():
    """The bootstrap settings the metrics and the report use (seeded by evaluate.seed)."""
    return dict(config["evaluate"]["bootstrap"], seed=config["evaluate"]["seed"])


def report_params():
    return dict(
        results=RESULTS,
        datasets=config["datasets"],
        experiments={n: x.settings("report") for n, x in EXPERIMENTS.items()},
        backbones=config["backbones"],
        proposers=config["proposers"],
        subsets=config["evaluate"]["subsets"],
        references=config["evaluate"]["references"],
        compare=config["report"]["compare"],
        overlays=config["report"]["overlays"],
        bootstrap=bootstrap_config(),
        submissions=config["submissions"],
        visibility=[d for d in config["datasets"] if kind(d).visibility],
    )


# The datasets some experiment trains or is scored on. Their take indexes are also plain inputs of the timing and
# report jobs: Snakemake waits for one checkpoint per input function, so without them every dataset's prepare and
# take index would run one after another.
USED_DATASETS = sorted({d for x in EXPERIMENTS.values() for d in (x.dataset, *x.evaluate_on)})
TAKE_INDEXES = [L.data(d).index() for d in USED_DATASETS]


def report_files(wc):
    """Every file the report reads (evaluates the datasets' take indexes), by kind (omama.report.report_inputs)."""
    takes = {d: selected_takes(d) for d in USED_DATASETS}
    return {**report_inputs(ReportParams.from_dict(report_params()), takes), "timing": [L.timing()]}


# report.smk's timing rule
def benchmark_patterns():
    """Every rule's benchmark pattern, from the workflow itself (a rule added later is timed too)."""
    from snakemake.io import strip_wildcard_constraints

    return {r.name: strip_wildcard_constraints(str(r.benchmark)) for r in workflow.rules if r.benchmark is not None}


def known_wildcards(wc):
    """The values the current config gives each wildcard (timings of removed experiments or datasets are left out)."""
    used = USED_DATASETS
    return {
        "dataset": used,
        "take": sorted({t for d in used for t in selected_takes(d)}),
        "exp": list(EXPERIMENTS),
        "backbone": list(config["backbones"]),
        "proposer": list(config["proposers"]),
        "name": list(config["submissions"]),
    }
