"""Shared fixtures: run the real Snakemake workflow on tiny configs in temporary folders."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Fixtures shared across test modules, registered once (modules import only their helpers).
pytest_plugins = ["data_fixtures", "weights_fixtures"]

os.environ.setdefault("OMP_NUM_THREADS", "1")


def default_config() -> dict:
    with open(REPO / "config.yaml") as f:
        return yaml.safe_load(f)


def tiny_config(**overrides) -> dict:
    """The default config shrunk to seconds of work; ``overrides`` replace top-level keys."""
    cfg = default_config()
    tabletop = cfg["datasets"]["tabletop"]
    # No relations_test.json: the official split and its test file have their own tests (test_protocol.py).
    tabletop["synthetic"].update(
        takes=3, seconds=3, ego_size=96, exo_size=[72, 128], objects=3, val_fraction=0.34, test_fraction=0.0
    )
    tabletop["selection"]["annotation_splits"] = ["train", "val"]
    tabletop["split"]["ratios"] = [0.7, 0.15, 0.15]
    # Offline and small: generated photo pairs instead of the motorcycle pairs and the BOP scenes (which run end
    # to end in test_stereo.py and test_bop.py), and every experiment on the untrained control backbone.
    cfg["datasets"] = {"tabletop": tabletop, "photos": {"kind": "photos", "synthetic_pairs": 2}}
    cfg["backbones"] = {"tiny-dinov2": cfg["backbones"]["tiny-dinov2"]}
    cfg["backbones"]["tiny-dinov2"].update(ego_grid=[8, 8], exo_grid=[6, 10], batch_size=4)
    for name in ("cosine-object", "trained-official", "trained-official-memory", "cosine-official"):  # test_protocol.py
        cfg["experiments"].pop(name)
    cfg["experiments"]["trained-ego2exo"]["split"] = "frame"
    cfg["submissions"] = {}
    for e in cfg["experiments"].values():
        e["backbone"] = "tiny-dinov2"
        if e.get("evaluate_on"):
            e["evaluate_on"] = ["tabletop", "photos"]
        if e.get("train"):
            e["train"].update(epochs=2, batch_size=8)
    cfg["experiments"]["cosine"]["evaluate_on"] = cfg["experiments"]["trained-frame-head"]["evaluate_on"] = None
    cfg["report"]["compare"] = [["untrained", "trained-frame"]]
    cfg.update(copy.deepcopy(overrides))
    return cfg


def run_snakemake(
    workdir: Path,
    config: dict,
    *args: str,
    check: bool = True,
    timeout: int = 900,
    config_name: str = "test-config.yaml",
    env: dict | None = None,
):
    """Run ``snakemake`` on the repo's Snakefile in ``workdir`` with ``config`` (written to
    ``workdir/config_name``; ``env`` added to the environment); return the process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / config_name
    with open(cfg_path, "w") as f:
        yaml.safe_dump(config, f)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(cfg_path),
        "--cores",
        "2",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real end-to-end run (report.html; both experiments also evaluated on the dataset of generated photo
    pairs) of the tiny default config, trimmed to two experiments and one reference predictor; returns its folder."""
    cfg = tiny_config()
    cfg["experiments"] = {k: cfg["experiments"][k] for k in ("untrained", "trained-frame")}
    cfg["evaluate"]["references"] = ["random"]
    cfg["report"]["compare"] = [["untrained", "trained-frame"]]
    workdir = tmp_path_factory.mktemp("tiny-run")
    run_snakemake(workdir, cfg)
    return workdir
