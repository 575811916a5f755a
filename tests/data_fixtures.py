"""Helpers for the data-stage tests: one tiny synthetic dataset per session, and take records."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from conftest import tiny_config

SELECTION = {"scenarios": [], "take_limit": None, "frame_fraction": 1.0, "seed": 0, "annotation_splits": ["train", "val"]}
FRAMES = {"ego_scale": "auto", "exo_scale": "auto", "jpeg_quality": 95, "skip_bad_masks": False}


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory) -> Path:
    """The tiny synthetic dataset (Ego-Exo4D layout), generated once per session and shared by modules."""
    from omama.synthetic.dataset import generate_dataset

    root = tmp_path_factory.getbasetemp() / "synthetic-tiny"
    if not (root / "takes.json").is_file():
        generate_dataset(root, tiny_config()["datasets"]["tabletop"]["synthetic"])
    return root


def copy_source(src: Path, dest: Path) -> Path:
    """A private copy of a source folder, safe to corrupt."""
    shutil.copytree(src, dest)
    return dest


def index(source: Path, out: Path, **selection) -> list[dict]:
    """Run the take index on ``source`` into ``out``; return the full per-take records."""
    from omama.data.takes import build_index

    lean = build_index(
        source_root=source,
        selection={**SELECTION, **selection},
        takes_out=out / "index/takes.json",
        records_dir=out / "index/takes",
        summary_out=out / "index/summary.json",
    )
    return [json.loads((out / "index/takes" / f"{r['take_uid']}.json").read_text()) for r in lean]


def first_mask(record: dict, exo: bool = True) -> tuple[str, str, str]:
    """(object, camera, frame key) of the first mask of an exo (or the ego) camera in a record."""
    for obj, per_cam in sorted(record["object_masks"].items()):
        for cam, ann in sorted(per_cam.items()):
            if ("aria" in cam) != exo and ann["annotation"]:
                return obj, cam, sorted(ann["annotation"], key=int)[0]
    raise AssertionError("record has no mask")


def with_mask_entry(record: dict, obj: str, cam: str, frame: str, **changes) -> dict:
    """A copy of ``record`` with one mask entry's fields replaced."""
    out = copy.deepcopy(record)
    out["object_masks"][obj][cam]["annotation"][frame].update(changes)
    return out
