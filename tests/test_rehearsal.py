"""config.rehearsal.yaml is the real-size rehearsal issue 23 asks for, and its CPU smoke overrides change only the scale,
the devices and the networks' input sizes. (The smoke run itself, through Snakemake to report.html, is
tests/test_benchmarks.py's "rehearsal" case: benchmarks/gpu_check.sh --smoke.)"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import run_snakemake

from omama.config import validate
from omama.experiment import Experiment
from omama.synthetic.dataset import split_counts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def config(*overrides: str) -> dict:
    from rehearsal import merged_config

    return merged_config([str(REPO / "config.rehearsal.yaml"), *(str(REPO / o) for o in overrides)])


def flat(d: dict, prefix: str = "") -> dict:
    return {
        k: v
        for key, value in d.items()
        for k, v in (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}).items()
    }


def test_rehearsal_config_is_the_real_size_run_on_a_gpu():
    c = config()
    synthetic = c["datasets"]["rehearsal"]["synthetic"]
    assert (synthetic["ego_size"], synthetic["exo_size"]) == (448, [448, 796])  # downscaled_takes/448
    assert split_counts(synthetic) == (13, 2, 3) and synthetic["seconds"] == 8  # 821 / 201 / 295 x 0.01
    assert c["datasets"]["rehearsal"]["frames"]["ego_scale"] == "auto"  # as config.egoexo4d.yaml
    b = c["backbones"]["dinov2-b14-reg"]
    assert b["kind"] == "dinov2" and b["weights"] == "untrained" and b["implementation"] == "transformers"
    assert {k: b["tiny"][k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")} == {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    }
    assert (b["ego_grid"], b["exo_grid"], b["device"], b["decode"]) == ([50, 50], [38, 68], "cuda", "device")
    p = c["proposers"]["fastsam-x"]
    assert (p["kind"], p["weights"], p["device"], p["imgsz"]) == ("fastsam", "untrained", "cuda", 1024)
    x = Experiment.resolve(c, "omama-official")
    assert x.split == "official" and x.matcher == "omama" and x.init == "none"
    assert {k: x.train[k] for k in ("epochs", "lr", "lr_min", "batch_size", "negatives", "seed", "features")} == {
        "epochs": 3,
        "lr": 8e-5,
        "lr_min": 1e-6,
        "batch_size": 24,
        "negatives": 31,
        "seed": 42,
        "features": "pre-extracted",
    }
    assert c["results"] == "results-rehearsal"


def test_smoke_overrides_change_only_the_scale_devices_and_input_sizes():
    full, smoke = flat(config()), flat(config("benchmarks/rehearsal-smoke.yaml"))
    changed = {k for k in full if full[k] != smoke[k]}
    assert changed == {
        "datasets.rehearsal.synthetic.official_scale",
        "datasets.rehearsal.synthetic.seconds",
        "backbones.dinov2-b14-reg.device",
        "backbones.dinov2-b14-reg.ego_grid",
        "backbones.dinov2-b14-reg.exo_grid",
        "proposers.fastsam-x.device",
        "proposers.fastsam-x.imgsz",
    }
    assert split_counts(config("benchmarks/rehearsal-smoke.yaml")["datasets"]["rehearsal"]["synthetic"]) == (3, 1, 1)


def test_rehearsal_config_plans_the_real_rules_and_validates_untouched(tmp_path):
    """A dry run of the config as shipped plans the pipeline's own rules up to the take index's checkpoint."""
    raw = yaml.safe_load((REPO / "config.rehearsal.yaml").read_text())
    assert validate(copy.deepcopy(raw))["backbones"]["dinov2-b14-reg"]["compile"] == "none"  # faster paths: off
    out = run_snakemake(tmp_path, raw, "-n", "--", "results-rehearsal/report.html", timeout=300)
    for rule in ("prepare", "take_index", "report"):
        assert f"rule {rule}:" in out.stdout or f"checkpoint {rule}:" in out.stdout


def test_gpu_check_sh_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")]).returncode == 0
    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_wheels.sh")]).returncode == 0
