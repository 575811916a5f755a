"""`omama match`: one photo pair through a trained experiment gives the pipeline's own prediction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, tiny_config
from PIL import Image

from omama.data.masks import decode_rle
from omama.match import NotTrainedError, match


def omama_match(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The console command ``omama match ARGS`` (as ``python -m omama.match match``), from the repo root."""
    cmd = [sys.executable, "-m", "omama.match", "match", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_untrained_experiment_names_missing_model_and_command(tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    with pytest.raises(NotTrainedError) as e:
        match(
            experiment="trained-frame",
            exo="x.jpg",
            mask="m.png",
            ego="y.jpg",
            out=tmp_path / "o.png",
            results=tmp_path / "res",
            config=cfg,
        )
    model = tmp_path / "res" / "experiments" / "trained-frame" / "model.pt"
    assert f"{model} is missing" in str(e.value)
    assert f"snakemake --cores 4 --configfile {cfg} {model}" in str(e.value)
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        match(experiment="nope", exo="x.jpg", mask="m.png", ego="y.jpg", out=tmp_path / "o.png", config=cfg)
    # an existence-head experiment needs its calibrated head; an ego->exo one is refused
    c = tiny_config()
    c["experiments"]["head"] = {**c["experiments"]["trained-frame"], "existence": "head"}
    c["experiments"]["e2x"] = {**c["experiments"]["trained-frame"], "direction": "ego2exo"}
    cfg.write_text(yaml.safe_dump(c))
    with pytest.raises(NotTrainedError, match=r"existence/model.pt is missing"):
        match(
            experiment="head",
            exo="x.jpg",
            mask="m.png",
            ego="y.jpg",
            out=tmp_path / "o.png",
            results=tmp_path / "r",
            config=cfg,
        )
    with pytest.raises(ValueError, match="'e2x' is ego2exo; omama match carries an exo mask"):
        match(experiment="e2x", exo="x.jpg", mask="m.png", ego="y.jpg", out=tmp_path / "o.png", config=cfg)
    proc = omama_match(
        "--experiment", "trained-frame", "--exo", "x.jpg", "--mask", "m.png", "--ego", "y.jpg",
        "-o", tmp_path / "o.png", "--config", cfg, "--results", tmp_path / "res",
    )  # fmt: skip
    assert proc.returncode == 2 and "has no trained head yet" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_match_reproduces_the_pipelines_prediction_of_a_pair(tiny_run, tmp_path):
    from omama.layout import Layout

    results = tiny_run / "results"
    layout = Layout(str(results))
    pair = Path(layout.data("photos").source()) / "pair_000"
    obj = sorted(p.name.split(".")[0] for p in (pair / "masks").glob("*.exo.png"))[0]
    exo, ego = next(pair.glob("exo.*")), next(pair.glob("ego.*"))
    out = tmp_path / "out" / "ego_mask.png"
    proc = omama_match(
        "--experiment", "trained-frame", "--exo", exo, "--mask", pair / "masks" / f"{obj}.exo.png", "--ego", ego,
        "-o", out, "--config", tiny_run / "test-config.yaml", "--results", results, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    record = json.loads((tmp_path / "out" / "ego_mask.json").read_text())
    assert printed["confidence"] == record["confidence"]
    pipeline = json.loads(Path(layout.result("predictions.json", "trained-frame", "photos", "test")).read_text())
    entry = pipeline["exo-ego"]["results"]["pair_000"]["masks"][obj]["exo_aria_ego"]["0"]
    assert record["confidence"] == pytest.approx(entry["confidence"], abs=1e-6)
    ego_rgb = np.asarray(Image.open(ego).convert("RGB"))
    mask = np.asarray(Image.open(out)) > 0
    assert mask.shape == ego_rgb.shape[:2] and record["mask_pixels"] == mask.sum() > 0
    expected = (
        np.asarray(
            Image.fromarray(decode_rle(entry["pred_mask"]).astype(np.uint8)).resize(
                (ego_rgb.shape[1], ego_rgb.shape[0]), Image.NEAREST
            )
        )
        > 0
    )
    assert (mask == expected).mean() > 0.99
    overlay = np.asarray(Image.open(tmp_path / "out" / "ego_mask.overlay.png"))
    assert overlay.shape[0] == 360 and overlay.std() > 10
