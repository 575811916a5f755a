"""The schema is the one source of config defaults: validation fills them, entry points outside the
workflow use the same filling, and the README's config reference is generated from it."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml
from conftest import REPO, default_config

from omama import config as omama_config
from omama.match import load_config


def test_readme_config_reference_is_the_one_generated_from_the_schema():
    readme = (REPO / "README.md").read_text()
    assert omama_config.readme_section(readme) == omama_config.reference(), (
        "README's config reference is stale: run `python -m omama.config --readme README.md`"
    )


def test_every_schema_key_has_a_description_and_the_reference_lists_it():
    ref = omama_config.reference()
    rows = [line for line in ref.splitlines()[2:]]
    assert all(line.count("`") >= 2 and not line.endswith("|  |") for line in rows), [r for r in rows if r.endswith("|  |")]
    for key in (
        "`backbones.<name>.device`",
        "`proposers.<name>.imgsz`",
        "`experiments.<name>.train.order`",
        "`evaluate.bootstrap.level`",
        "`datasets.<name>.split.seed`",
        "`datasets.<name>.width` (kind motorcycle)",
        "`datasets.<name>.synthetic.takes` (kind synthetic)",
    ):
        assert key in ref


def test_validation_fills_defaults_by_kind_exactly_as_the_schema_says():
    cfg = default_config()
    cfg["proposers"]["sam"] = {"kind": "fastsam", "weights": "FastSAM-x.pt"}
    cfg["backbones"]["vit"] = {"kind": "dinov2", "weights": "untrained"}
    del cfg["backbones"]["mobilenet-v2"]["stride"]
    omama_config.validate(cfg)
    assert cfg["proposers"]["sam"] == {
        "kind": "fastsam",
        "weights": "FastSAM-x.pt",
        "seed": 0,
        "device": "cpu",
        "imgsz": 1024,
        "conf": 0.4,
        "iou": 0.9,
        "retina_masks": True,
    }
    assert "imgsz" not in cfg["proposers"]["classical"] and cfg["proposers"]["classical"]["device"] == "cpu"
    vit = cfg["backbones"]["vit"]
    assert vit["implementation"] == "transformers" and vit["ego_grid"] == [50, 50] and vit["tiny"]["hidden_size"] == 96
    assert cfg["backbones"]["mobilenet-v2"]["stride"] == 16 and cfg["backbones"]["mobilenet-v2"]["tiny"]["seed"] == 0
    assert cfg["experiments"]["untrained"]["train"] is None
    assert cfg["experiments"]["trained-frame"]["train"]["order"] == "shuffled"


def test_entry_fills_one_entry_without_touching_the_callers_dict_and_names_a_bad_key():
    given = {"kind": "classical", "min_area": 0.01}
    filled = omama_config.entry("proposers", given)
    assert given == {"kind": "classical", "min_area": 0.01}
    assert filled == {"kind": "classical", "min_area": 0.01, "device": "cpu", "scales": [0.5, 1.0, 2.0], "max_iou": 0.9}
    with pytest.raises(ValueError, match="resize"):
        omama_config.entry("backbones", {"kind": "dinov2", "weights": "untrained", "resize": "bicubic"})


def test_omama_match_reads_its_config_through_the_schema(tmp_path):
    cfg = copy.deepcopy(default_config())
    del cfg["backbones"]["mobilenet-v2"]["batch_size"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    assert loaded["backbones"]["mobilenet-v2"]["batch_size"] == 8 and loaded["evaluate"]["bootstrap"]["resamples"] == 1000
    cfg["proposers"]["classical"]["kind"] = "watershed"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"config.yaml.*proposers\.classical\.kind: unknown proposer kind 'watershed'"):
        load_config(path)


def test_a_wheel_carries_the_schema_and_its_config_code_finds_it(tmp_path):
    """Not only an editable install: a built wheel holds the schema (the package's link to
    workflow/schemas/config.schema.yaml, resolved) and omama.config reads it from there."""
    src = tmp_path / "src"
    for part in ("omama", "workflow/schemas"):
        shutil.copytree(REPO / part, src / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("omama-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("omama/config.schema.yaml") == (REPO / "workflow" / "schemas" / "config.schema.yaml").read_bytes()
        z.extractall(tmp_path / "site")
    code = "import omama.config as c; print(c.SCHEMA); print(sorted(c.schema()['properties'])[:3])"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == [
        str(tmp_path / "site" / "omama" / "config.schema.yaml"),
        "['backbones', 'compute_threads', 'datasets']",
    ]
