"""config.egoexo4d.yaml: valid, and without credentials or weights a dry run plans the jobs and
names each missing thing, while a real run stops before its first job; never a traceback."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import yaml
from conftest import REPO

from omama.config import validate
from omama.preflight import preflight

REAL = REPO / "config.egoexo4d.yaml"


def real_config() -> dict:
    with open(REAL) as f:
        cfg = yaml.safe_load(f)
    return validate(cfg)  # fills the defaults (each dataset kind's too), as the workflow does


def bare_env(tmp_path) -> dict:
    """An environment with no AWS or Hugging Face credentials and an empty home and cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_", "HUGGING"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), OMP_NUM_THREADS="1")
    return env


def snakemake(tmp_path, *args):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REAL),
        "--directory",
        str(tmp_path / "work"),
        "--cores",
        "1",
        *args,
    ]
    (tmp_path / "work").mkdir(exist_ok=True)
    return subprocess.run(cmd, capture_output=True, text=True, env=bare_env(tmp_path), timeout=300)


def test_real_config_is_valid_and_is_the_reviews_study():
    cfg = real_config()
    health = cfg["datasets"]["health"]
    assert health["kind"] == "egoexo" and health["selection"]["scenarios"] == ["Health"]
    assert {x["dataset"] for x in cfg["experiments"].values()} == {"health", "egoexo4d"}
    assert cfg["backbones"]["dinov2-b14-reg"]["weights"] == "facebook/dinov2-with-registers-base"
    assert {b["kind"] for b in cfg["backbones"].values()} == {"dinov2", "dinov3", "resnet50-dino"}
    assert cfg["proposers"]["fastsam-x"]["weights"].endswith("FastSAM-x.pt")
    base, fine = cfg["experiments"]["omama-baseline"], cfg["experiments"]["omama-finetuned"]
    assert base["train"] is None and base["init"] == fine["init"] != "none"
    assert fine["train"]["lr"] == 8e-6 and fine["train"]["epochs"] == 10 and fine["train"]["grad_clip"] == 1.0
    trained_backbones = {cfg["backbones"][x["backbone"]]["kind"] for x in cfg["experiments"].values() if x["train"]}
    assert trained_backbones == {"dinov2", "dinov3", "resnet50-dino"}
    # everything that starts from the released checkpoint sees frames preprocessed as it was trained
    released = {x["backbone"] for x in cfg["experiments"].values() if x["init"] == base["init"]}
    assert released == set(cfg["backbones"]) and all(cfg["backbones"][b]["resize"] == "nearest" for b in released)


def test_dry_run_without_credentials_lists_jobs_and_each_problem(tmp_path):
    proc = snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    assert "PREFLIGHT: 5 problem(s)" in proc.stderr
    for dataset in ("health", "egoexo4d"):  # each Ego-Exo4D dataset names its own profile setting
        assert f"datasets.{dataset}.egoexo.s3_profile 'default': the AWS profile is not defined" in proc.stderr
    assert "'weights/FastSAM-x.pt' does not exist" in proc.stderr
    assert "'weights/omama_exo2ego.pt' does not exist" in proc.stderr
    assert "facebook/dinov3-vits16plus-pretrain-lvd1689m' is a gated Hugging Face model" in proc.stderr
    for job in ("prepare", "take_index", "report"):  # prepare: the metadata download
        assert job in proc.stdout


def test_real_run_without_credentials_stops_before_any_job(tmp_path):
    proc = snakemake(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert "PREFLIGHT failed, nothing was run" in out and "aws configure --profile default" in out
    assert not (tmp_path / "work" / "results-egoexo4d").exists()


def test_preflight_is_clean_once_credentials_and_weights_are_there(tmp_path, monkeypatch):
    cfg = real_config()
    for k in [k for k in os.environ if k.startswith(("AWS_", "HF_"))]:
        monkeypatch.delenv(k)
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_example")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    for name in ("FastSAM-x.pt", "omama_exo2ego.pt"):
        (tmp_path / "weights" / name).write_bytes(b"x")
    assert preflight(cfg) == []

    other = copy.deepcopy(cfg)
    other["datasets"]["health"]["egoexo"]["s3_profile"] = "egoexo"
    other["experiments"]["omama-finetuned"]["init"] = "experiment:omama-baseline"
    other["datasets"]["my-photos"] = {"kind": "photos", "path": "my-photos"}  # the entry commented out in the file
    other["experiments"]["omama-finetuned"]["evaluate_on"] = ["health", "my-photos"]
    validate(other)
    problems = preflight(other)
    assert len(problems) == 3, problems
    expected = (
        "datasets.health.egoexo.s3_profile 'egoexo'",
        "experiments.omama-finetuned.init names experiment 'omama-baseline', which is not trained",
        "datasets.my-photos.path 'my-photos' does not exist",
    )
    assert all(sum(e in p for p in problems) == 1 for e in expected), problems


def test_default_config_has_no_preflight_problems():
    with open(REPO / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    validate(cfg)  # fills the defaults, as the workflow does
    assert preflight(cfg) == []
