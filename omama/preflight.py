"""Checks a config before a run: credentials, weights files and folders it needs.

``preflight(config)`` takes the validated config (the schema's defaults filled, as the Snakefile
does first) and returns one plain sentence per problem (what is missing, where it is
configured and how to fix it). The Snakefile prints them at parse time, so a dry run lists
them as warnings and still shows the planned jobs; a real run stops before its first job.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GATED_HF = ("facebook/dinov3-",)
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def schema_problem(config: dict, schema_path: str | os.PathLike) -> str:
    """The most relevant schema violation of ``config`` in one sentence: the key, the rule, and
    what the key is for (not jsonschema's first error, often "not valid under any of the given schemas")."""
    import jsonschema
    import yaml
    from jsonschema.exceptions import best_match

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return f"config is valid under {schema_path}"
    key = ".".join(map(str, error.absolute_path)) or "(top level)"
    about = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f"config error at {key}: {error.message}" + (f" ({about})" if about else "")


def preflight(config: dict) -> list[str]:
    """Every problem that would stop a real run of ``config`` (an empty list when none)."""
    problems = source_problems(config["source"])
    used = config["experiments"].values()
    for key, section, check in (("backbone", "backbones", backbone_problems), ("proposer", "proposers", proposer_problems)):
        for name in sorted({x[key] for x in used}):
            if name in config[section]:
                problems += check(name, config[section][name])
            else:
                problems.append(
                    f"an experiment uses {key} {name!r}, which is not under {section}: (known: {sorted(config[section])})"
                )
    inits: dict[str, list[str]] = {}
    for name, x in config["experiments"].items():
        inits.setdefault(x["init"], []).append(name)
    for init, names in inits.items():
        problems += init_problems(names, init, config["experiments"])
    problems += init_cycles(config["experiments"])
    problems += schedule_problems(config["experiments"])
    problems += results_problems(config)
    problems += split_problems(config)
    problems += robustness_problems(config["robustness"], config["experiments"])
    problems += memory_problems(config)
    problems += compare_problems(config["report"]["compare"], config["experiments"])
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


def hidden_size(cfg: dict) -> int:
    """Channels of a transformer backbone's tokens: its tiny size, its local config, else ViT-B's 768."""
    import json

    if cfg["weights"] == "untrained":
        return cfg["tiny"]["hidden_size"]
    folder = Path(cfg["weights"]).expanduser()
    found = folder / "config.json" if (folder / "config.json").is_file() else None
    if found is None and HF_ID.match(cfg["weights"]):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(cfg["weights"], "config.json")
        found = Path(cached) if isinstance(cached, str) else None
    return int(json.loads(found.read_text()).get("hidden_size", 768)) if found else 768


def input_pixels(cfg: dict, view: str) -> tuple[int, int]:
    """(H, W) of a backbone's input for ``view``: its grid times the patch (stride), as ``load_backbone`` sizes it."""
    grid = cfg[f"{view}_grid"]
    if cfg["kind"] == "resnet50-dino":
        return tuple(-(-n // 2) * 32 for n in grid)
    patch = {"dinov2": 14, "dinov3": 16}.get(cfg["kind"], cfg.get("stride", 16))
    return tuple(n * patch for n in grid)


def frame_bytes(cfg: dict, view: str) -> float:
    """Peak activation bytes of one frame of ``view`` in a backbone's forward pass."""
    h, w = input_pixels(cfg, view)
    if cfg["kind"] in ("dinov2", "dinov3"):
        patch = 14 if cfg["kind"] == "dinov2" else 16
        return h * w / patch**2 * hidden_size(cfg) * VIT_BYTES
    return h * w * CNN_PIXEL_BYTES


def memory_problems(config: dict) -> list[str]:
    """Jobs computing on the CPU whose estimated peak memory exceeds ``memory_limit``, naming the keys that
    set it: a features job (batch_size frames at the grids' input size), a training step (batch_size x
    (negatives + 1) candidate masks at the destination's input size), the classical proposer on a photo
    (robustness.max_side). Estimates, within about a factor of two (benchmarks/RESULTS.md)."""
    limit, source = memory_limit(config)
    gb = "{:.1f} GB".format
    exps = config["experiments"]
    problems = []
    for name in sorted({x["backbone"] for x in exps.values()} & set(config["backbones"])):
        cfg = config["backbones"][name]
        view = max(("ego", "exo"), key=lambda v: frame_bytes(cfg, v))
        need = BASE_BYTES + cfg["batch_size"] * frame_bytes(cfg, view)
        if cfg["device"] == "cpu" and need > limit:
            h, w = input_pixels(cfg, view)
            problems.append(
                f"backbones.{name}: a features job needs about {gb(need / GB)} ({cfg['batch_size']} frames of {h}x{w} px "
                f"per forward pass: {view}_grid {cfg[f'{view}_grid']}), more than {gb(limit / GB)} ({source}): lower "
                f"backbones.{name}.{view}_grid or batch_size"
            )
    for name, x in exps.items():
        cfg = config["backbones"].get(x["backbone"])
        if x["train"] is None or cfg is None or cfg["device"] != "cpu":
            continue
        view = "ego" if x["direction"] == "exo2ego" else "exo"
        h, w = input_pixels(cfg, view)
        masks = x["train"]["batch_size"] * (x["train"]["negatives"] + 1)
        need = BASE_BYTES + masks * h * w * MASK_PIXEL_BYTES
        if need > limit:
            problems.append(
                f"experiments.{name}.train: a training step needs about {gb(need / GB)} ({masks} candidate masks of {h}x{w} "
                f"px: batch_size x (negatives + 1) at backbones.{x['backbone']}.{view}_grid), more than {gb(limit / GB)} "
                f"({source}): lower batch_size, negatives or the grid"
            )
    side = config["robustness"]["max_side"]
    need = BASE_BYTES + (side or 0) ** 2 * PROPOSAL_PIXEL_BYTES
    if config["robustness"]["experiments"] and need > limit:
        problems.append(
            f"robustness.max_side {side}: proposals on a {side}x{side} working copy need about {gb(need / GB)}, "
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


def source_problems(source: dict) -> list[str]:
    kind = source["kind"]
    if kind == "synthetic":
        return []
    if kind == "local":
        root = Path(source["path"])
        missing = [
            f
            for f in ("takes.json", "annotations/relations_train.json", "annotations/relations_val.json")
            if not (root / f).is_file()
        ]
        if not root.is_dir():
            return [
                f"source.path {str(root)!r} (kind local) does not exist: point it at a folder in the "
                f"Ego-Exo4D layout (takes.json, annotations/, takes/<take_name>/frame_aligned_videos/)"
            ]
        return [f"source.path {str(root)!r} (kind local) lacks {f}" for f in missing]
    problems = []
    if importlib.util.find_spec("ego4d") is None:
        problems.append("source.kind egoexo needs the official download client: pip install ego4d")
    problems += aws_problems(source["egoexo"]["s3_profile"])
    return problems


def aws_problems(profile: str) -> list[str]:
    """Whether the AWS profile the `egoexo` client will use has credentials (files and env only, no network)."""
    import botocore.exceptions
    import botocore.session

    files = (
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
    )
    where = " or ".join(files)
    try:
        profiles = botocore.session.Session(profile="default").full_config.get("profiles", {})
    except botocore.exceptions.BotoCoreError as e:
        return [f"source.egoexo.s3_profile {profile!r}: the AWS configuration in {where} cannot be read: {e}"]
    keys = ("aws_access_key_id", "credential_process", "sso_session", "sso_start_url", "role_arn", "web_identity_token_file")
    if any(k in profiles.get(profile, {}) for k in keys):
        return []
    if profile == "default" and os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return []
    state = "has no credentials" if profile in profiles else "is not defined"
    return [
        f"source.egoexo.s3_profile {profile!r}: the AWS profile {state} in {where}. Ego-Exo4D needs a signed "
        f"licence (https://ego4ddataset.com/egoexo-license/); configure the keys it gives you with "
        f"`aws configure --profile {profile}` (they expire after about 14 days)"
    ]


def local_path(weights: str) -> bool:
    """Whether a weights string names a file or folder (rather than a hub id, a URL or 'untrained')."""
    return (
        weights.startswith(("/", ".", "~"))
        or weights.endswith(FILE_SUFFIXES)
        or (not HF_ID.match(weights) and not weights.startswith(("http://", "https://")))
    )


def schedule_problems(experiments: dict) -> list[str]:
    """The cosine schedule runs from ``lr`` down to ``lr_min``: a larger ``lr_min`` would raise the rate."""
    return [
        f"experiments.{name}.train.lr_min {x['train']['lr_min']:g} is larger than lr {x['train']['lr']:g}: the cosine "
        f"schedule would raise the learning rate instead of lowering it; give lr_min <= lr"
        for name, x in experiments.items()
        if x["train"] is not None and x["train"]["lr_min"] > x["train"]["lr"]
    ]


def network_problems(name: str, cfg: dict) -> list[str]:
    """An untrained transformer whose width does not split into its attention heads (the schema checks
    which implementation can load which kind)."""
    tiny = cfg["tiny"]
    if (
        cfg["kind"] in ("dinov2", "dinov3")
        and cfg["weights"] == "untrained"
        and tiny["hidden_size"] % tiny["num_attention_heads"]
    ):
        return [
            f"backbones.{name}.tiny.hidden_size {tiny['hidden_size']} is not a multiple of num_attention_heads "
            f"{tiny['num_attention_heads']}: each attention head gets an equal share of the channels"
        ]
    return []


def backbone_problems(name: str, cfg: dict) -> list[str]:
    return network_problems(name, cfg) + weights_problems(name, cfg)


def weights_problems(name: str, cfg: dict) -> list[str]:
    weights = cfg["weights"]
    if cfg["kind"] == "torchvision":
        # A torchvision weights name (IMAGENET1K_V1): checked by the torch_weights job, the first one
        # to run (importing torchvision here would slow every start-up).
        return []
    if weights == "untrained" or weights.startswith(("http://", "https://")):
        return []
    if Path(weights).expanduser().exists():
        return []
    if cfg.get("implementation") == "torchhub":
        return []
    if local_path(weights):
        return [f"backbones.{name}.weights {weights!r} does not exist: put the {cfg['kind']} weights there"]
    if HF_ID.match(weights) and not hf_cached(weights):
        if weights.startswith(GATED_HF) and not hf_token():
            return [
                f"backbones.{name}.weights {weights!r} is a gated Hugging Face model that is not in the local "
                f"cache and no Hugging Face token is set: accept its licence on "
                f"https://huggingface.co/{weights}, then run `hf auth login` or set HF_TOKEN"
            ]
        if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"):
            return [
                f"backbones.{name}.weights {weights!r} is not in the Hugging Face cache and the hub is set "
                f"offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE): download it once online or give a local folder"
            ]
    return []


def hf_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def hf_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def proposer_problems(name: str, cfg: dict) -> list[str]:
    if cfg["kind"] == "sam":
        from omama.weights import PACKAGED  # imports torch: only for sam proposers

        weights = cfg["weights"]
        if weights in PACKAGED or Path(weights).expanduser().is_file():
            return []  # a packaged file is fetched by the proposer_weights job
        return [
            f"proposers.{name}.weights {weights!r} does not exist: use {sorted(PACKAGED)} (fetched by the "
            f"proposer_weights stage) or put a SAM checkpoint there (sam_b.pt, sam2_t.pt, ...)"
        ]
    if cfg["kind"] != "fastsam":
        return []
    weights = cfg.get("weights")
    if not weights:
        return [f"proposers.{name}: kind fastsam needs weights: the path of FastSAM-s.pt or FastSAM-x.pt"]
    if not Path(weights).expanduser().is_file():
        return [
            f"proposers.{name}.weights {weights!r} does not exist: download {Path(weights).name} from the "
            f"Ultralytics assets release (https://github.com/ultralytics/assets/releases) and put it there"
        ]
    return []


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
    """``results`` must be a folder of its own: not the root, and no folder of your own inputs (a local
    source, the robustness photos) may lie in it, where the pipeline writes, replaces and deletes files."""
    results = Path(config["results"]).expanduser().resolve()
    if results == Path("/").resolve():
        return [f"results {config['results']!r} resolves to the filesystem root: give a folder of its own, e.g. results"]
    inputs = {"robustness.path": config["robustness"]["path"]}
    if config["source"]["kind"] == "local":
        inputs["source.path"] = config["source"]["path"]
    return [
        f"{key} {path!r} lies in the results folder {config['results']!r}, where the pipeline writes, replaces and "
        f"deletes files: keep your own inputs outside it"
        for key, path in inputs.items()
        if path and Path(path).expanduser().resolve().is_relative_to(results)
    ]


def split_problems(config: dict) -> list[str]:
    """Split ratios must sum to 1, and no subset an experiment needs may have ratio 0."""
    from omama.splits import SUBSETS, required_subsets

    ratios = config["split"]["ratios"]
    if abs(sum(ratios) - 1) > 1e-6:
        return [f"split.ratios {ratios} sum to {sum(ratios):g}, not 1: give the train, val and test shares of the pairs"]
    needed: dict[str, list[str]] = {}
    for strategy in {x["split"] for x in config["experiments"].values()}:
        for subset, names in required_subsets(config["experiments"], config["evaluate"]["subsets"], strategy).items():
            needed.setdefault(subset, []).extend(names)
    problems = []
    for subset, names in sorted(needed.items()):
        if ratios[SUBSETS.index(subset)] == 0:
            evaluated = subset in config["evaluate"]["subsets"]
            problems.append(
                f"split.ratios gives subset {subset!r} ratio 0, but experiment(s) {sorted(names)} "
                f"{'evaluate' if evaluated else 'train on'} it: raise its ratio"
                + (" or remove it from evaluate.subsets" if evaluated else "")
            )
    return problems


def robustness_problems(cfg: dict, experiments: dict) -> list[str]:
    problems = []
    path = cfg.get("path")
    if path and not Path(path).is_dir():
        problems.append(
            f"robustness.path {path!r} does not exist: put the photo pairs there "
            f"(<pair>/exo.jpg, <pair>/ego.jpg, <pair>/masks/<object>.exo.png and .ego.png) or set it to null"
        )
    problems += exo2ego_problems(
        cfg["experiments"],
        experiments,
        unknown="robustness.experiments names",
        where="robustness.experiments",
        why="the photo-pair sets are scored exo->ego only",
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
