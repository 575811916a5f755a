"""The pipeline on a real SLURM: a one-node cluster started here, jobs submitted by the
snakemake slurm executor through (a test copy of) profiles/slurm, outputs equal to a local run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_config
from slurm.cluster import SlurmCluster, missing_binaries

from omama.data.takes import take_rank
from omama.features.store import FeatureStore
from omama.layout import Layout

D = Layout("results").data("tabletop")

needs_slurm = pytest.mark.skipif(
    bool(missing_binaries()),
    reason=f"SLURM/munge not installed ({', '.join(missing_binaries())} missing): run `bash .ci/slurm-setup.sh install`",
)


def cluster_profile(dest: Path) -> Path:
    """profiles/slurm as shipped, with settings a one-node test cluster needs: small memory
    requests, quick status checks, and squeue for job states (no accounting database)."""
    cfg = yaml.safe_load((REPO / "profiles" / "slurm" / "config.v8+.yaml").read_text())
    cfg["default-resources"].update({"mem_mb": "1000 * attempt", "runtime": "30 * attempt"})
    cfg.update(
        {"slurm-init-seconds-before-status-checks": 1, "slurm-status-command": "squeue", "slurm-keep-successful-logs": True}
    )
    dest.mkdir(parents=True)
    (dest / "config.v8+.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def read_features(path: Path) -> dict[str, np.ndarray]:
    """camera -> float32 (frames, C, h, w) of a feature store."""
    store = FeatureStore(path)
    return {cam: store.read_many(cam, store.frames(cam)) for cam in store.cameras}


@pytest.mark.slow
@needs_slurm
def test_pipeline_runs_through_sbatch_and_matches_local(cluster, tiny_run, tmp_path):
    # The session's tiny run is the local reference. On SLURM: two of its takes, from its source
    # (read as a local folder), through the profile, up to pairs and features.
    cfg = yaml.safe_load((tiny_run / "test-config.yaml").read_text())
    tabletop = cfg["datasets"]["tabletop"]
    tabletop.pop("synthetic")
    tabletop.update(kind="local", path=str(tiny_run / D.source()))
    tabletop["selection"]["take_limit"] = 2
    all_takes = [t["take_uid"] for t in json.loads((tiny_run / D.index()).read_text())]
    takes = sorted(all_takes, key=lambda t: take_rank(t, tabletop["selection"]["seed"]))[:2]
    targets = [D.pairs(), *(D.features("tiny-dinov2", t) for t in takes)]

    work = tmp_path / "on-slurm"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**cluster.env(), "OMAMA_SLURM_PARTITION": cluster.partition}
    cmd = [
        "timeout",
        "-s",
        "KILL",
        "900",
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        "--profile",
        str(cluster_profile(tmp_path / "profile")),
        *targets,
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    print(f"SLURM run {time.monotonic() - start:.0f} s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake on SLURM failed ({proc.returncode}):\n{out[-8000:]}\n{cluster.logs()}"
    selected = [t["take_uid"] for t in json.loads((work / D.index()).read_text())]
    assert sorted(selected) == sorted(takes)

    # Every non-local job went through sbatch, ran on the cluster and completed.
    submitted = dict(re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", out))
    remote_rules = re.findall(r"^(?:rule|checkpoint) (\w+):$", out, re.M)
    assert len(submitted) == len(remote_rules) > 0, out[-6000:]
    jobs = {j["id"]: j for j in cluster.jobs()}
    assert set(submitted) <= set(jobs), (submitted, jobs)
    assert {jobs[i]["state"] for i in submitted} == {"COMPLETED"}, jobs
    assert {jobs[i]["partition"] for i in submitted} == {cluster.partition}, "partition not taken from the profile"
    ran = sorted(re.match(r"rule_(\w+?)(_wildcards_|$)", jobs[i]["comment"]).group(1) for i in submitted)
    assert ran == sorted(remote_rules)
    assert {"extract", "pairs", "features"} <= set(ran)
    assert ran.count("features") == len(takes)
    for log in submitted.values():  # the job's own log: the rule ran inside the SLURM job step
        text = Path(log).read_text()
        assert "--executor slurm-jobstep" in text and "Finished jobid" in text, text[-3000:]

    # The same config gives the same outputs on SLURM as locally.
    key = ["take_uid", "object", "exo_cam", "frame"]
    ours = pd.read_parquet(work / D.pairs()).sort_values(key).reset_index(drop=True)
    theirs = pd.read_parquet(tiny_run / D.pairs())
    theirs = theirs[theirs.take_uid.isin(takes)].sort_values(key).reset_index(drop=True)
    assert len(ours) > 0
    pd.testing.assert_frame_equal(ours, theirs)
    for t in takes:
        ours = read_features(work / D.features("tiny-dinov2", t))
        theirs = read_features(tiny_run / D.features("tiny-dinov2", t))
        assert ours.keys() == theirs.keys() and ours
        for cam in ours:
            np.testing.assert_array_equal(ours[cam], theirs[cam], err_msg=f"take {t} camera {cam}")
    assert not (work / D.root / "raw").exists() or not any((work / D.root / "raw").iterdir()), (
        "raw videos (temp) were not deleted on the cluster"
    )


@pytest.mark.parametrize(
    "env",
    [{"OMAMA_SLURM_PARTITION": "gpuq", "OMAMA_SLURM_ACCOUNT": "lab1"}, {}],
    ids=["partition-account", "cluster-defaults"],
)
def test_profile_sets_partition_account_and_gpu(tmp_path, env):
    """Dry run under profiles/slurm of a config that asks for cuda: the features job requests a
    GPU and the partition/account named in the environment (none when unset)."""
    cfg = tiny_config()
    cfg["backbones"]["tiny-dinov2"]["device"] = "cuda"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMAMA_SLURM_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config),
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "-n",
            D.features("tiny-dinov2", "some-take"),
        ],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    resources = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, re.M))
    features = dict(kv.split("=", 1) for kv in resources["features"].split(", "))
    assert features["gpu"] == "1" and features["mem_mb"] == "8000" and features["runtime"] == "120"
    assert features.get("slurm_partition") == env.get("OMAMA_SLURM_PARTITION")
    assert features.get("slurm_account") == env.get("OMAMA_SLURM_ACCOUNT")
    extract = dict(kv.split("=", 1) for kv in resources["extract"].split(", "))
    assert "gpu" not in extract or extract["gpu"] == "0"
