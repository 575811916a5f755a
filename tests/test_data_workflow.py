"""The data rules through real Snakemake runs on the tiny config."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from conftest import run_snakemake, tiny_config

from omama.layout import Layout

pytestmark = pytest.mark.slow
L = Layout("results")
D = L.data("tabletop")
TARGET = D.split("object")


def tabletop(cfg: dict) -> dict:
    return cfg["datasets"]["tabletop"]


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table of a (dry) run."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data-workflow")
    run_snakemake(d, tiny_config(), TARGET)
    return d


def test_object_split_from_scratch(workdir):
    takes = json.loads((workdir / D.index()).read_text())
    assert len(takes) == tabletop(tiny_config())["synthetic"]["takes"]
    split = pd.read_parquet(workdir / D.split("object"))
    counts = json.loads((workdir / D.pairs_summary()).read_text())
    assert (split.direction == "exo2ego").sum() == counts["pairs"] > 0  # one table holds both directions
    assert (split.direction == "ego2exo").sum() == counts["ego2exo"]["pairs"] > 0
    diag = json.loads((workdir / D.split_diagnostics("object")).read_text())
    assert diag["label_overlap"] == {"train-val": [], "train-test": [], "val-test": []}
    for t in takes:
        a = json.loads((workdir / D.annotation(t["take_uid"])).read_text())
        assert a["subsample_idx"] == t["frames"]
        assert (workdir / D.image(t["take_uid"], t["ego_cam"], t["frames"][0])).is_file()
        job = dict(dataset="tabletop", take=t["take_uid"])
        assert (workdir / L.log("extract", "dataset", "take").format(**job)).is_file()
        assert (workdir / L.benchmark("extract", "dataset", "take").format(**job)).is_file()
    raw = workdir / D.root / "raw"
    assert not raw.exists() or not any(raw.iterdir())  # videos deleted after extraction
    assert json.loads((workdir / D.index_summary()).read_text())["selected"] == len(takes)


def test_split_settings_rerun_only_the_split(workdir):
    cfg = tiny_config()
    tabletop(cfg)["split"].update(ratios=[0.5, 0.25, 0.25], seed=7)
    proc = run_snakemake(workdir, cfg, TARGET, "-n")
    assert job_counts(proc.stdout) == {"split": 1}
    assert "Updated input files: results/params/split/tabletop/" in proc.stdout, proc.stdout[-3000:]


def test_frame_settings_rerun_extraction_but_not_the_index(workdir):
    cfg = tiny_config()
    tabletop(cfg)["frames"]["jpeg_quality"] = 80
    counts = job_counts(run_snakemake(workdir, cfg, TARGET, "-n").stdout)
    takes = tabletop(tiny_config())["synthetic"]["takes"]
    assert counts == {"extract": takes, "pairs": 1, "split": 1}  # a local or synthetic take is read in place


@pytest.mark.parametrize("kind", ["synthetic", "egoexo"])
def test_lint_is_clean_for_the_whole_workflow(kind, tmp_path):
    """``snakemake --lint`` finds nothing in any rule file, with either kind of dataset (synthetic
    generates its takes, egoexo fetches the metadata and downloads)."""
    cfg = tiny_config()
    tabletop(cfg)["kind"] = kind
    if kind == "egoexo":
        tabletop(cfg).pop("synthetic")
    proc = run_snakemake(tmp_path, cfg, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in out, out[-3000:]


def test_replacing_a_local_source_video_re_extracts_its_take(workdir, tmp_path):
    """The raw copy of a video is temporary: the local source's own video must be an input of
    extraction, else a replaced video leaves the old frames in place."""
    cfg = tiny_config()
    shutil.copytree(workdir / D.source(), tmp_path / "source")
    tabletop(cfg).update(kind="local", path=str(tmp_path / "source"))
    tabletop(cfg).pop("synthetic")
    run_snakemake(tmp_path / "run", cfg, D.pairs())
    assert "Nothing to be done" in run_snakemake(tmp_path / "run", cfg, D.pairs(), "-n").stdout
    take, other = json.loads((tmp_path / "run" / D.index()).read_text())[:2]
    cam = take["exo_cams"][0]
    video = tmp_path / "source" / take["videos"][cam]
    video.write_bytes((tmp_path / "source" / other["videos"][cam]).read_bytes())  # another video, same place
    plan = run_snakemake(tmp_path / "run", cfg, D.pairs(), "-n").stdout
    assert job_counts(plan) == {"extract": 1, "pairs": 1}, plan[-3000:]
    assert f"take={take['take_uid']}" in plan and "Updated input files" in plan
