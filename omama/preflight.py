"""Checks a config before a run: credentials, weights files and folders it needs.

``preflight(config)`` takes the validated config (the schema's defaults filled, as the Snakefile
does first) and returns one plain sentence per problem (what is missing, where it is
configured and how to fix it). The Snakefile prints them at parse time, so a dry run lists
them as warnings and still shows the planned jobs; a real run stops before its first job.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GATED_HF = ("facebook/dinov3-",)
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def preflight(config: dict) -> list[str]:
    """Every problem that would stop a real run of ``config`` (an empty list when none); ``config`` validated
    (``omama.config.validate``: each entry's kind known)."""
    from omama.registry import BACKBONES, DATASETS, PROPOSERS

    problems = name_problems(config)
    if problems:  # the rest needs every name to resolve
        return problems
    used = config["experiments"].values()
    for key, section, kinds in (
        ("dataset", "datasets", DATASETS),
        ("backbone", "backbones", BACKBONES),
        ("proposer", "proposers", PROPOSERS),
    ):
        names = sorted(
            {x[key] for x in used} | ({d for x in used for d in x["evaluate_on"] or []} if key == "dataset" else set())
        )
        for name in names:
            cfg = config[section][name]
            problems += kinds.get(cfg["kind"]).problems(name, cfg)
    inits: dict[str, list[str]] = {}
    for name, x in config["experiments"].items():
        inits.setdefault(x["init"], []).append(name)
    for init, names in inits.items():
        problems += init_problems(names, init, config["experiments"])
    problems += init_cycles(config["experiments"])
    problems += schedule_problems(config["experiments"])
    problems += results_problems(config)
    problems += split_problems(config)
    problems += memory_problems(config)
    problems += compare_problems(config["report"]["compare"], config["experiments"])
    problems += submission_problems(config)
    problems += temporal_problems(config["experiments"])
    return problems


def temporal_problems(experiments: dict) -> list[str]:
    """Temporal memory and cycle adaptation replace the published confidence of exo->ego matching; memory is
    fitted on whole validation takes and meaningful on whole test takes (split take or official)."""
    problems = []
    for name, x in experiments.items():
        for key, on in (("temporal", x["temporal"] == "memory"), ("adapt", x["adapt"] == "cycle")):
            if on and (x["direction"] != "exo2ego" or x["existence"] != "similarity" or x["matcher"] != "omama"):
                problems.append(
                    f"experiments.{name}.{key}: needs direction exo2ego, existence similarity and matcher omama "
                    f"(it replaces the published confidence of the matching head)"
                )
        if x["temporal"] == "memory" and x["split"] not in ("take", "official"):
            problems.append(
                f"experiments.{name}.temporal: memory needs whole takes in validation and test: split take or official, "
                f"not {x['split']!r}"
            )
    return problems


def name_problems(config: dict) -> list[str]:
    """Each experiment's dataset, evaluation datasets, backbone and proposer are configured; an ego2exo
    experiment is scored on its own dataset only (the other datasets' sections read exo->ego samples)."""
    problems = []
    for name, x in config["experiments"].items():
        for key, section in (("dataset", "datasets"), ("backbone", "backbones"), ("proposer", "proposers")):
            if x[key] not in config[section]:
                problems.append(
                    f"experiments.{name}.{key} names {x[key]!r}, which is not under {section}: (known: {sorted(config[section])})"
                )
        for d in x["evaluate_on"] or []:
            if d not in config["datasets"]:
                problems.append(
                    f"experiments.{name}.evaluate_on names {d!r}, which is not under datasets: (known: {sorted(config['datasets'])})"
                )
        if x["direction"] == "ego2exo" and set(x["evaluate_on"] or [x["dataset"]]) - {x["dataset"]}:
            problems.append(
                f"experiments.{name}.evaluate_on names datasets besides its own ({x['dataset']!r}): an ego2exo experiment is "
                f"scored on its own dataset only"
            )
    return problems


def submission_problems(config: dict) -> list[str]:
    """Each ``submissions`` entry names an experiment of each direction it fills, on the official
    split (the server scores the test takes of relations_test.json), predicted on test."""
    problems = []
    experiments = config["experiments"]
    for name, blocks in config["submissions"].items():
        for direction, exp in blocks.items():
            where = f"submissions.{name}.{direction}"
            if exp not in experiments:
                problems.append(f"{where} names experiment {exp!r}, which is not under experiments:")
            elif experiments[exp]["direction"] != direction:
                problems.append(f"{where} names {exp!r}, an {experiments[exp]['direction']} experiment")
            elif experiments[exp]["split"] != "official":
                problems.append(
                    f"{where} names {exp!r}, whose split is {experiments[exp]['split']!r}: the challenge server scores "
                    f"the test takes of relations_test.json, so a submission needs split: official"
                )
        if blocks and "test" not in config["evaluate"]["subsets"]:
            problems.append(f"submissions.{name} needs test predictions: add test to evaluate.subsets")
    return problems


GB = 2**30
BASE_BYTES = 1 * GB  # a numeric job before its data: the interpreter, torch, the network's weights
# Peak bytes, measured on this project's CPU jobs (benchmarks/RESULTS.md, "Memory of a job"):
CNN_PIXEL_BYTES = 256  # per input pixel of a frame: torchvision networks (and ResNet-50) cut at stride 16
VIT_BYTES = 96  # per token and hidden channel: transformers (DINOv2/v3)
MASK_PIXEL_BYTES = 10  # per candidate-mask pixel of a training step: the mask, its float copies, gradients
PROPOSAL_PIXEL_BYTES = 600  # per pixel of a frame for the classical proposer (six segmentations)


def memory_limit(config: dict) -> tuple[float, str]:
    """(bytes one job may use, where that figure comes from): ``job_memory_gb``, else this machine's memory
    (its cgroup limit when lower)."""
    if config["job_memory_gb"]:
        return config["job_memory_gb"] * GB, "job_memory_gb"
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        limit = min(limit, int(cgroup)) if cgroup.isdigit() else limit
    except OSError:
        pass
    return limit, "this machine's memory; set job_memory_gb for the machines that run the jobs"


def memory_problems(config: dict) -> list[str]:
    """Jobs computing on the CPU whose estimated peak memory exceeds ``memory_limit``, naming the keys that
    set it: a features job (batch_size frames at the grids' input size, from the backbone's kind), a training
    step (batch_size x (negatives + 1) candidate masks at the destination's input size), a proposer on a
    dataset's largest frames (``max_side`` of photo datasets). Estimates, within about a factor of two
    (benchmarks/RESULTS.md)."""
    from omama.registry import BACKBONES, DATASETS, PROPOSERS

    limit, source = memory_limit(config)
    gb = "{:.1f} GB".format
    exps = config["experiments"]
    problems = []
    for name in sorted({x["backbone"] for x in exps.values()}):
        cfg = config["backbones"][name]
        kind = BACKBONES.get(cfg["kind"])
        view = max(("ego", "exo"), key=lambda v: kind.frame_bytes(cfg, v))
        need = BASE_BYTES + cfg["batch_size"] * kind.frame_bytes(cfg, view)
        if cfg["device"] == "cpu" and need > limit:
            h, w = kind.input_size(cfg, view)
            problems.append(
                f"backbones.{name}: a features job needs about {gb(need / GB)} ({cfg['batch_size']} frames of {h}x{w} px "
                f"per forward pass: {view}_grid {cfg[f'{view}_grid']}), more than {gb(limit / GB)} ({source}): lower "
                f"backbones.{name}.{view}_grid or batch_size"
            )
    for name, x in exps.items():
        cfg = config["backbones"][x["backbone"]]
        if x["train"] is None or cfg["device"] != "cpu":
            continue
        view = "ego" if x["direction"] == "exo2ego" else "exo"
        h, w = BACKBONES.get(cfg["kind"]).input_size(cfg, view)
        masks = x["train"]["batch_size"] * (x["train"]["negatives"] + 1)
        need = BASE_BYTES + masks * h * w * MASK_PIXEL_BYTES
        if need > limit:
            problems.append(
                f"experiments.{name}.train: a training step needs about {gb(need / GB)} ({masks} candidate masks of {h}x{w} "
                f"px: batch_size x (negatives + 1) at backbones.{x['backbone']}.{view}_grid), more than {gb(limit / GB)} "
                f"({source}): lower batch_size, negatives or the grid"
            )
    for dataset in sorted({d for x in exps.values() for d in x["evaluate_on"] or [x["dataset"]]}):
        cfg = config["datasets"][dataset]
        side = DATASETS.get(cfg["kind"]).max_side(cfg)
        proposers = {
            config["proposers"][x["proposer"]]["kind"]
            for x in exps.values()
            if dataset in (x["evaluate_on"] or [x["dataset"]])
        }
        need = BASE_BYTES + (side or 0) ** 2 * max(PROPOSERS.get(k).pixel_bytes for k in proposers)
        if side and need > limit:
            problems.append(
                f"datasets.{dataset}.max_side {side}: proposals on a {side}x{side} working copy need about {gb(need / GB)}, "
                f"more than {gb(limit / GB)} ({source}): lower it"
            )
    return problems


def compare_problems(pairs: list, experiments: dict) -> list[str]:
    """Each ``report.compare`` pair names two exo->ego experiments (the report's per-sample sections
    are exo->ego; ego->exo experiments have their own section)."""
    why = "pairs compare exo->ego experiments (ego->exo ones are in the report's both-directions section)"
    return [
        problem
        for pair in pairs
        for problem in exo2ego_problems(
            pair, experiments, unknown="report.compare names experiment", where=f"report.compare pair {list(pair)}", why=why
        )
    ]


def exo2ego_problems(names, experiments: dict, *, unknown: str, where: str, why: str) -> list[str]:
    """A problem for each of ``names`` that is no experiment (the message starts with ``unknown``) or
    not an exo->ego one (``where`` names the setting, ``why`` says what needs exo->ego)."""
    problems = []
    for n in names:
        if n not in experiments:
            problems.append(f"{unknown} {n!r}, which is not under experiments:")
        elif experiments[n]["direction"] != "exo2ego":
            problems.append(f"{where} names {n!r}, an {experiments[n]['direction']} experiment: {why}")
    return problems


def schedule_problems(experiments: dict) -> list[str]:
    """The cosine schedule runs from ``lr`` down to ``lr_min``: a larger ``lr_min`` would raise the rate."""
    return [
        f"experiments.{name}.train.lr_min {x['train']['lr_min']:g} is larger than lr {x['train']['lr']:g}: the cosine "
        f"schedule would raise the learning rate instead of lowering it; give lr_min <= lr"
        for name, x in experiments.items()
        if x["train"] is not None and x["train"]["lr_min"] > x["train"]["lr"]
    ]


def init_problems(names: list[str], init: str, experiments: dict) -> list[str]:
    """Problems with one ``init`` value shared by the experiments ``names``."""
    where = ", ".join(f"experiments.{n}.init" for n in names)
    if init == "none":
        return []
    if init.startswith("experiment:"):
        other = init.split(":", 1)[1]
        if other not in experiments:
            return [f"{where} names experiment {other!r}, which is not under experiments:"]
        if experiments[other].get("train") is None:
            return [f"{where} names experiment {other!r}, which is not trained (train: null)"]
        return []
    if not Path(init).expanduser().is_file():
        return [
            f"{where}: {init!r} does not exist: download the released O-MaMa exo->ego checkpoint "
            f"(a plain state_dict, see the O-MaMa repository) and put it there, or set init: none"
        ]
    return []


def init_cycles(experiments: dict) -> list[str]:
    """Experiments whose initial weights come, through ``init: experiment:<name>``, from themselves."""
    parent = {n: x["init"].split(":", 1)[1] for n, x in experiments.items() if x["init"].startswith("experiment:")}
    problems, reported = [], set()
    for start in sorted(parent):
        chain = [start]
        while chain[-1] in parent and parent[chain[-1]] not in chain:
            chain.append(parent[chain[-1]])
        if chain[-1] in parent:  # the next step closes a loop
            loop = chain[chain.index(parent[chain[-1]]) :]
            if not reported & set(loop):
                reported |= set(loop)
                problems.append(
                    f"initial weights form a cycle: {' -> '.join(loop + loop[:1])} "
                    f"(experiments.<name>.init: experiment:<other>); start one of them from none or a file"
                )
    return problems


def results_problems(config: dict) -> list[str]:
    """``results`` must be a folder of its own: not the root, and no folder of your own inputs (a dataset's
    ``path``: a local copy, photo pairs, a BOP dataset) may lie in it, where the pipeline writes, replaces and
    deletes files."""
    results = Path(config["results"]).expanduser().resolve()
    if results == Path("/").resolve():
        return [f"results {config['results']!r} resolves to the filesystem root: give a folder of its own, e.g. results"]
    inputs = {f"datasets.{name}.path": cfg.get("path") for name, cfg in config["datasets"].items()}
    return [
        f"{key} {path!r} lies in the results folder {config['results']!r}, where the pipeline writes, replaces and "
        f"deletes files: keep your own inputs outside it"
        for key, path in inputs.items()
        if path and Path(path).expanduser().resolve().is_relative_to(results)
    ]


def split_problems(config: dict) -> list[str]:
    """Per dataset: the drawn splits' ratios sum to 1 and give no subset an experiment needs a ratio 0; the
    official split's subsets come from annotation files the selection reads."""
    from omama.data.splits import SUBSETS, required_subsets
    from omama.experiment import experiments

    exps = experiments(config)
    evaluated = config["evaluate"]["subsets"]
    problems = []
    for dataset, cfg in config["datasets"].items():
        strategies = {x.split_on(dataset) for x in exps.values() if dataset in (x.dataset, *x.evaluate_on)}
        if "official" in strategies:
            files = cfg.get("selection", {}).get("annotation_splits")
            for subset, names in sorted(required_subsets(exps, evaluated, dataset, "official").items()):
                if files is None:
                    problems.append(
                        f"experiment(s) {sorted(names)} use split official on datasets.{dataset}, whose kind "
                        f"{cfg['kind']!r} has no annotation files (relations_<split>.json)"
                    )
                elif subset not in files:
                    problems.append(
                        f"experiment(s) {sorted(names)} use split official and need its {subset!r} takes, which come from "
                        f"relations_{subset}.json: add {subset} to datasets.{dataset}.selection.annotation_splits"
                    )
        drawn = strategies - {"official", "all"}
        if not drawn:
            continue
        ratios = cfg["split"]["ratios"]
        if abs(sum(ratios) - 1) > 1e-6:
            problems.append(
                f"datasets.{dataset}.split.ratios {ratios} sum to {sum(ratios):g}, not 1: give the train, val and test "
                f"shares of the pairs"
            )
            continue
        needed: dict[str, list[str]] = {}
        for strategy in drawn:
            for subset, names in required_subsets(exps, evaluated, dataset, strategy).items():
                needed.setdefault(subset, []).extend(names)
        for subset, names in sorted(needed.items()):
            if ratios[SUBSETS.index(subset)] == 0:
                scored = subset in evaluated
                problems.append(
                    f"datasets.{dataset}.split.ratios gives subset {subset!r} ratio 0, but experiment(s) {sorted(names)} "
                    f"{'evaluate' if scored else 'train on'} it: raise its ratio"
                    + (" or remove it from evaluate.subsets" if scored else "")
                )
    return problems


def announce(problems: list[str], configfiles) -> None:
    """Print the problems as warnings (a dry run still lists the planned jobs)."""
    import sys

    if problems:
        files = ", ".join(map(str, configfiles)) or "config.yaml"
        lines = "\n".join(f"  - {p}" for p in problems)
        print(
            f"PREFLIGHT: {len(problems)} problem(s) with {files}; a real run will stop before its first job:\n{lines}",
            file=sys.stderr,
        )


def stop_if(problems: list[str]) -> None:
    """End a real run, before any job, with the problems as the message (no traceback)."""
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SystemExit(f"PREFLIGHT failed, nothing was run. Fix these first:\n{lines}")
