"""Temporal memory and label-free adaptation: honest by construction (no ground truth of the predicted takes
reaches a prediction), causal by default, and what they do to the choices."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from omama.config import validate
from omama.data.masks import encode_rle
from omama.data.splits import write_split
from omama.evaluation.predict import predict_experiment
from omama.experiment import Experiment, Inputs
from omama.layout import Layout
from omama.model.temporal import FrameEvidence, Memory, MemoryFit, decide, remember, write_memory_fit


def evidence(frame: int, scores, descriptors, objects=("cup_0",)) -> FrameEvidence:
    return FrameEvidence(np.array(scores, float), np.array(descriptors, float), list(objects), frame)


def test_memory_prefers_the_candidate_like_the_earlier_choice_and_is_causal():
    d = np.eye(3)  # three candidates with orthogonal unit descriptors
    memory = Memory()
    first = evidence(0, [[0.9, 0.1, 0.0]], d)
    idx, conf = decide(first, memory, MemoryFit(alpha=1.0, gamma=0.0, offline=False))
    assert idx.tolist() == [0]  # nothing remembered yet: the head's best
    remember(first, memory, idx, conf)
    later = evidence(30, [[0.2, 0.5, 0.0]], d)  # the head now prefers candidate 1 by 0.3
    assert decide(later, memory, MemoryFit(0.0, 0.0, False))[0].tolist() == [1]  # alpha 0: memory off
    assert decide(later, memory, MemoryFit(1.0, 0.0, False))[0].tolist() == [0]  # like what it chose at frame 0
    # causal: a choice remembered at a later frame is not seen at an earlier one; offline sees every other frame
    assert memory.recall("cup_0", 0, offline=False) is None
    assert memory.recall("cup_0", 60, offline=True) is not None and memory.recall("cup_0", 0, offline=True) is None
    # presence history: an object seen with low confidence before is called absent sooner
    low = Memory()
    remember(first, low, np.array([0]), np.array([0.1]))
    p_alone = decide(evidence(30, [[0.1, 0.0, 0.0]], d), Memory(), MemoryFit(0.0, 1.0, False))[1][0]
    p_hist = decide(evidence(30, [[0.1, 0.0, 0.0]], d), low, MemoryFit(0.0, 1.0, False))[1][0]
    assert p_alone > 0.5 > p_hist


def garbage_destinations(annotation_path, view_cam: str, seed: int) -> None:
    """Replace every mask of ``view_cam`` in a take's annotation.json by a random one of the same size."""
    ann = json.loads(annotation_path.read_text())
    rng = np.random.default_rng(seed)
    h, w = ann["native_size"][view_cam]
    for per_cam in ann["masks"].values():
        for frame in per_cam.get(view_cam, {}):
            per_cam[view_cam][frame] = encode_rle(rng.random((h, w)) < 0.5)
    annotation_path.write_text(json.dumps(ann))


@pytest.fixture(scope="module")
def world(tiny_run, tmp_path_factory):
    """A private copy of the tiny run's results (its trained-frame head) with a take split of its tabletop."""
    root = tmp_path_factory.mktemp("temporal") / "results"
    shutil.copytree(tiny_run / "results", root)
    layout = Layout(str(root))
    d = layout.data("tabletop")
    write_split(
        pairs_path=d.pairs(),
        strategy="take",
        ratios=[0.34, 0.33, 0.33],
        seed=0,
        split_out=d.split("take"),
        diagnostics_out=d.split_diagnostics("take"),
    )
    cfg = validate(yaml.safe_load((tiny_run / "test-config.yaml").read_text()))
    return layout, cfg


def predictions(layout, x: Experiment, dataset: str, out, temporal=None) -> tuple[dict, pd.DataFrame]:
    takes = [t["take_uid"] for t in json.loads(open(layout.data(dataset).index()).read())]
    inputs = dataclasses.replace(
        Inputs.from_layout(layout, x, dataset, takes), model=layout.model("trained-frame"), temporal=temporal
    )
    predict_experiment(
        x,
        inputs,
        subset="test",
        predictions_out=out / "p.json",
        ground_truth_out=out / "g.json",
        samples_out=out / "s.parquet",
    )
    return json.loads((out / "p.json").read_text()), pd.read_parquet(out / "s.parquet")


@pytest.mark.slow
def test_memory_never_reads_the_test_takes_ground_truth(world, tmp_path):
    layout, cfg = world
    x = dataclasses.replace(
        Experiment.resolve(cfg, "trained-frame"),
        split="take",
        temporal="memory",
        temporal_memory={"offline": False, "alphas": [0.5, 1.0, 2.0], "gammas": [1.0]},
    )
    takes = [t["take_uid"] for t in json.loads(open(layout.data("tabletop").index()).read())]
    inputs = dataclasses.replace(
        Inputs.from_layout(layout, x, "tabletop", takes, "temporal"), model=layout.model("trained-frame")
    )
    fit = write_memory_fit(x, inputs, out=tmp_path / "memory.json")
    assert fit["validation"]["takes"] >= 1 and "0.0" in fit["validation"]["iou_by_alpha"]
    memory = MemoryFit(alpha=1.0, gamma=1.0, offline=False)  # memory switched on whatever validation chose
    (tmp_path / "on.json").write_text(json.dumps(dataclasses.asdict(memory)))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    before, samples_before = predictions(layout, x, "tabletop", tmp_path / "a", temporal=tmp_path / "on.json")
    split = pd.read_parquet(layout.data("tabletop").split("take"))
    test_takes = sorted(set(split.loc[split["split"] == "test", "take_uid"]))
    for i, take in enumerate(test_takes):
        ann = layout.data("tabletop").annotation(take)
        garbage_destinations(Path(ann), json.loads(open(ann).read())["ego_cam"], seed=i)
    after, samples_after = predictions(layout, x, "tabletop", tmp_path / "b", temporal=tmp_path / "on.json")
    assert after == before  # the same masks and confidences
    assert not np.allclose(samples_after["iou"], samples_before["iou"])  # the garbage reached the scoring, not the model


@pytest.mark.slow
def test_cycle_adaptation_never_reads_the_photos_ground_truth(world, tmp_path):
    layout, cfg = world
    x = dataclasses.replace(
        Experiment.resolve(cfg, "trained-frame"), adapt="cycle", adaptation={"steps": 3, "lr": 1e-4, "seed": 0}
    )
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "plain").mkdir()
    before, samples_before = predictions(layout, x, "photos", tmp_path / "a")
    plain, _ = predictions(layout, dataclasses.replace(x, adapt="none"), "photos", tmp_path / "plain")
    assert plain != before  # adaptation changed the head (or the cycle confidence), so the check below means something
    for i, take in enumerate(t["take_uid"] for t in json.loads(open(layout.data("photos").index()).read())):
        ann = layout.data("photos").annotation(take)
        garbage_destinations(Path(ann), "aria_ego", seed=i)
    after, samples_after = predictions(layout, x, "photos", tmp_path / "b")
    assert after == before
    assert not np.allclose(samples_after["iou"].fillna(-1), samples_before["iou"].fillna(-1))
