"""Training, resume, on-the-fly vs stored features, predictions and references on a tiny world."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from omama.config import entry
from omama.data.masks import encode_rle, mask_box
from omama.evaluation.metrics import evaluate, summarise
from omama.evaluation.predict import predict_experiment, predict_reference
from omama.experiment import Experiment, Inputs
from omama.features.store import extract_features
from omama.io import write_json, write_parquet
from omama.model.batches import TrainingSet, batch_features, collate
from omama.model.head import score_candidates
from omama.model.takedata import Corpus, Geometry, subset_rows
from omama.model.train import train_experiment

EGO, EXO = "aria01_214-1", "cam01"
EGO_HW, EXO_HW = (56, 56), (42, 70)
FRAMES = [0, 30, 60, 90]
COLOURS = {"cup_0": (230, 40, 40), "box_0": (40, 200, 60), "pen_0": (40, 60, 230)}
BACKBONE = {
    "kind": "dinov2",
    "weights": "untrained",
    "ego_grid": [4, 4],
    "exo_grid": [3, 5],
    "batch_size": 4,
    "dtype": "float32",
    "compressor": "none",
    "compression_level": 0,
    "tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0},
}
PROPOSER = {"kind": "classical"}
TRAIN = {
    "epochs": 2,
    "lr": 1e-4,
    "lr_min": 1e-6,
    "batch_size": 4,
    "negatives": 7,
    "grad_clip": 1.0,
    "seed": 3,
    "features": "pre-extracted",
    "workers": 0,
    "weight_decay": 0.01,
}


def square(hw, x, y, s):
    m = np.zeros(hw, bool)
    m[y : y + s, x : x + s] = True
    return m


def make_take(root: Path, take: str, rng: np.random.Generator, empty_frame: int | None) -> dict:
    images = root / "frames" / take / "images"
    masks, rows, props = {o: {EGO: {}, EXO: {}} for o in COLOURS}, [], []
    for f in FRAMES:
        ego = np.full((*EGO_HW, 3), 128, np.uint8) + rng.integers(0, 20, (*EGO_HW, 3), dtype=np.uint8)
        exo = np.full((*EXO_HW, 3), 100, np.uint8) + rng.integers(0, 20, (*EXO_HW, 3), dtype=np.uint8)
        frame_props = []
        for k, (obj, colour) in enumerate(COLOURS.items()):
            xm = square(EXO_HW, 5 + 20 * k, 10 + int(rng.integers(0, 10)), 12)
            exo[xm] = colour
            masks[obj][EXO][str(f)] = encode_rle(xm)
            present = not (obj == "pen_0" and f == 30)
            if present:
                em = square(EGO_HW, int(rng.integers(0, 44)), int(rng.integers(0, 44)), 10)
                ego[em] = colour
                masks[obj][EGO][str(f)] = encode_rle(em)
                frame_props.append(em)
            rows.append(
                {
                    "take_uid": take,
                    "take_name": take,
                    "scenario": "Synthetic",
                    "parent_scenario": "Synthetic",
                    "annotation_split": "train",
                    "object": obj,
                    "label": obj[:-2],
                    "ego_cam": EGO,
                    "exo_cam": EXO,
                    "frame": f,
                    "ego_present": present,
                    "exo_area": int(xm.sum()),
                    "ego_area": int(em.sum()) if present else 0,
                }
            )
        frame_props += [
            square(EGO_HW, int(rng.integers(0, 40)), int(rng.integers(0, 40)), int(rng.integers(5, 15))) for _ in range(6)
        ]
        if f != empty_frame:
            for i, m in enumerate(frame_props):
                x, y, w, h = mask_box(m)
                props.append(
                    {
                        "frame": f,
                        "proposal": i,
                        "height": EGO_HW[0],
                        "width": EGO_HW[1],
                        "counts": encode_rle(m)["counts"],
                        "x": x,
                        "y": y,
                        "w": w,
                        "h": h,
                        "score": 1.0,
                        "area": int(m.sum()),
                    }
                )
        for cam, im in ((EGO, ego), (EXO, exo)):
            (images / cam).mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(images / cam / f"{f}.jpg", quality=95)
    annotation = {
        "take_uid": take,
        "take_name": take,
        "scenario": "Synthetic",
        "parent_scenario": "Synthetic",
        "ego_cam": EGO,
        "exo_cams": [EXO],
        "native_size": {EGO: list(EGO_HW), EXO: list(EXO_HW)},
        "image_size": {EGO: list(EGO_HW), EXO: list(EXO_HW)},
        "subsample_idx": FRAMES,
        "masks": masks,
        "annotated_frames": {o: {EGO: FRAMES, EXO: FRAMES} for o in COLOURS},
        "skipped": [],
    }
    write_json(root / "frames" / take / "annotation.json", annotation)
    write_parquet(root / "proposals" / f"{take}.parquet", pd.DataFrame(props))
    extract_features(
        annotation_json=root / "frames" / take / "annotation.json",
        images_dir=images,
        out_store=root / "features" / f"{take}.zarr",
        backbone_cfg=BACKBONE,
        workers=1,
    )
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    takes = ["take-a", "take-b", "take-c"]
    rows = [r for t in takes for r in make_take(root, t, rng, empty_frame=90 if t == "take-c" else None)]
    df = pd.DataFrame(rows)
    df["split"] = df["take_uid"].map({"take-a": "train", "take-b": "val", "take-c": "test"})
    df.loc[(df.take_uid == "take-b") & (df.frame == 90), "split"] = "train"
    write_parquet(root / "split.parquet", df)
    return {
        "root": root,
        "split": root / "split.parquet",
        "annotations": [str(root / "frames" / t / "annotation.json") for t in takes],
        "proposals": [str(root / "proposals" / f"{t}.parquet") for t in takes],
        "features": [str(root / "features" / f"{t}.zarr") for t in takes],
        "images": [str(root / "frames" / t / "images") for t in takes],
    }


def experiment(cfg=TRAIN, **settings) -> Experiment:
    """The world's experiment as the workflow resolves it (the schema's defaults filled): the tiny backbone,
    the classical proposer, training ``cfg`` (None: the initial weights)."""
    return Experiment(
        name="tiny",
        dataset="world",
        backbone_name="tiny",
        backbone=entry("backbones", BACKBONE),
        proposer_name="classical",
        proposer=entry("proposers", PROPOSER),
        split="frame",
        train=None if cfg is None else entry("train", cfg),
        **settings,
    )


def inputs(world, images=None, **files) -> Inputs:
    """The world's files as a stage's inputs (split, annotations, proposals, features, images, heads)."""
    return Inputs(
        split=str(world["split"]),
        annotations=tuple(world["annotations"]),
        proposals=tuple(world["proposals"]),
        features=tuple(world["features"]),
        images=None if images is None else tuple(images),
        **files,
    )


def train(world, out: Path, cfg=TRAIN, init=None, stop=None):
    return train_experiment(
        experiment(cfg),
        inputs(world, world["images"], init=None if init is None else str(init)),
        model_out=out / "model.pt",
        history_out=out / "train" / "history.json",
        checkpoint_dir=out / "train" / "checkpoints",
        stop_after_epochs=stop,
    )


def predict(world, model: Path, out: Path, calibration=None) -> dict:
    """predict_experiment on the world's test rows (pre-extracted features) into ``out``; its metrics."""
    return predict_experiment(
        experiment(None, existence="similarity" if calibration is None else "head"),
        inputs(world, model=str(model), calibration=None if calibration is None else str(calibration)),
        subset="test",
        predictions_out=out / "predictions.json",
        ground_truth_out=out / "ground_truth.json",
        samples_out=out / "samples.parquet",
    )


def test_killed_training_resumes_to_bit_identical_weights(world, tmp_path):
    full = train(world, tmp_path / "full")
    assert [h["epoch"] for h in full] == [1, 2] and all(np.isfinite(h["train_loss"]) for h in full)
    assert train(world, tmp_path / "cut", stop=1) is None
    assert not (tmp_path / "cut" / "model.pt").exists() and (tmp_path / "cut/train/checkpoints/last.pt").exists()
    resumed = train(world, tmp_path / "cut")
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [(h["train_loss"], h["val_iou"]) for h in resumed] == [(h["train_loss"], h["val_iou"]) for h in full]
    assert json.loads((tmp_path / "cut/train/history.json").read_text())[0]["epoch"] == 1
    train(world, tmp_path / "untrained", cfg=None)
    u = torch.load(tmp_path / "untrained" / "model.pt", weights_only=True)
    assert "projection.weight" in u and not torch.equal(u["mlp.mlp.0.weight"], a["mlp.mlp.0.weight"])
    assert json.loads((tmp_path / "untrained/train/history.json").read_text()) == []
    again = train(world, tmp_path / "again", cfg={**TRAIN, "epochs": 1}, init=tmp_path / "full" / "model.pt")
    assert len(again) == 1


def test_training_killed_with_sigkill_resumes_to_the_same_weights(world, tmp_path, caplog):
    from dataclasses import asdict

    cfg = {**TRAIN, "epochs": 4}
    args = dict(
        experiment=asdict(experiment(cfg)),
        inputs=asdict(inputs(world)),
        model_out=str(tmp_path / "cut/model.pt"),
        history_out=str(tmp_path / "cut/train/history.json"),
        checkpoint_dir=str(tmp_path / "cut/train/checkpoints"),
    )
    script = (
        "import json; from omama.experiment import Experiment, Inputs; from omama.model.train import train_experiment; "
        f"a = json.loads({json.dumps(json.dumps(args))}); "
        "train_experiment(Experiment(**a.pop('experiment')), Inputs(**a.pop('inputs')), **a)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = tmp_path / "cut/train/checkpoints/last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (tmp_path / "cut/model.pt").exists(), "the run was not cut mid-training"
    with caplog.at_level("INFO", logger="omama.model.train"):
        train(world, tmp_path / "cut", cfg=cfg)
    assert "resuming after epoch" in caplog.text
    train(world, tmp_path / "full", cfg=cfg)
    a = torch.load(tmp_path / "full/model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut/model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut/train/history.json").read_text())[-1]["epoch"] == 4


def swap_train_and_test(world, tmp: Path) -> dict:
    """take-a (train) and take-c (test) change places: as many training rows, other ones."""
    df = pd.read_parquet(world["split"])
    df["split"] = df["take_uid"].map({"take-a": "test", "take-c": "train"}).fillna(df["split"])
    write_parquet(tmp / "split.parquet", df)
    assert len(subset_rows(df, "train", direction="exo2ego")) == len(subset_rows(world["split"], "train", direction="exo2ego"))
    return {**world, "split": tmp / "split.parquet"}


def other_proposals(world, tmp: Path) -> dict:
    """take-a's proposals with the first one of each frame dropped (as a proposer setting change would)."""
    df = pd.read_parquet(world["proposals"][0])
    write_parquet(tmp / "take-a.parquet", df[df.proposal != 0])
    return {**world, "proposals": [str(tmp / "take-a.parquet"), *world["proposals"][1:]]}


def other_features(world, tmp: Path) -> dict:
    """take-b's (validation) features re-extracted by a backbone with other weights."""
    tiny = {**BACKBONE, "tiny": {**BACKBONE["tiny"], "seed": 1}}
    extract_features(
        annotation_json=world["annotations"][1],
        images_dir=world["images"][1],
        out_store=tmp / "take-b.zarr",
        backbone_cfg=tiny,
        workers=1,
    )
    return {**world, "features": [world["features"][0], str(tmp / "take-b.zarr"), world["features"][2]]}


@pytest.mark.parametrize(
    "change", [swap_train_and_test, other_proposals, other_features], ids=["split rows", "proposals", "features"]
)
def test_a_finished_checkpoint_never_resumes_on_changed_inputs(world, tmp_path, caplog, change):
    """The checkpoint of a finished run survives in the experiment's folder; after an input
    changes, training starts over and equals a fresh run on the new inputs."""
    train(world, tmp_path / "exp")
    before = torch.load(tmp_path / "exp/model.pt", weights_only=True)
    changed = change(world, tmp_path)
    with caplog.at_level("INFO", logger="omama.model.train"):
        train(changed, tmp_path / "exp")
    assert "training from scratch" in caplog.text and "resuming" not in caplog.text
    train(changed, tmp_path / "fresh")
    after = torch.load(tmp_path / "exp/model.pt", weights_only=True)
    fresh = torch.load(tmp_path / "fresh/model.pt", weights_only=True)
    assert all(torch.equal(after[k], fresh[k]) for k in fresh)
    assert not all(torch.equal(after[k], before[k]) for k in before)
    caplog.clear()
    with caplog.at_level("INFO", logger="omama.model.train"):
        train(changed, tmp_path / "exp")  # unchanged since: the finished checkpoint is reused
    assert "resuming after epoch 2" in caplog.text


def test_feature_stores_of_another_geometry_are_an_error_whichever_take_comes_first(world, tmp_path):
    """The geometry comes from every store, never from the first take's alone."""
    other = {**BACKBONE, "ego_grid": [2, 2]}
    extract_features(
        annotation_json=world["annotations"][1],
        images_dir=world["images"][1],
        out_store=tmp_path / "take-b.zarr",
        backbone_cfg=other,
        workers=1,
    )
    features = [world["features"][0], str(tmp_path / "take-b.zarr"), world["features"][2]]
    corpus = Corpus(world["annotations"], world["proposals"], features)
    with pytest.raises(
        ValueError,
        match=r"different backbone geometries: takes \['take-a', 'take-c'\] have .*"
        r"takes \['take-b'\] have .*grid=\{'ego': \(2, 2\)",
    ):
        corpus.geometry()


def test_on_the_fly_features_equal_stored_float32_features(world):
    corpus = Corpus(world["annotations"], world["proposals"], world["features"], world["images"])
    from omama.features.backbones import load_backbone

    backbone = load_backbone(BACKBONE)
    geometry = Geometry.from_description(backbone.describe())
    assert geometry == corpus.geometry()
    rows = subset_rows(world["split"], "train", direction="exo2ego")
    stored = TrainingSet(rows, corpus, geometry, negatives=7, seed=0, stored=True, direction="exo2ego")
    live = TrainingSet(rows, corpus, geometry, negatives=7, seed=0, stored=False, direction="exo2ego")
    idx = [0, 5, 9, 2]
    b1, b2 = collate([stored[i] for i in idx]), collate([live[i] for i in idx])
    (s1, d1), (s2, d2) = batch_features(b1), batch_features(b2, backbone)
    assert torch.equal(s1, s2) and torch.equal(d1, d2)
    from omama.model.setup import build_head

    head = build_head(geometry, seed=0, direction="exo2ego")
    sc1 = score_candidates(head, s1, d1, b1["src_mask"], b1["cand_masks"])
    sc2 = score_candidates(head, s2, d2, b2["src_mask"], b2["cand_masks"])
    assert torch.equal(sc1, sc2)


def test_predictions_round_trip_and_references(world, tmp_path):
    train(world, tmp_path / "exp", cfg={**TRAIN, "epochs": 1})
    out = tmp_path / "exp" / "test"
    metrics = predict(world, tmp_path / "exp" / "model.pt", out)
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == len(subset_rows(world["split"], "test", direction="exo2ego")) == 12
    assert evaluate(out / "predictions.json", out / "ground_truth.json") == metrics == summarise(samples)
    assert metrics["n_total"] == 12 and metrics["n_present"] == 11  # pen_0 is absent at frame 30
    none = samples[samples.frame == 90]
    assert (none.n_candidates == 0).all() and (none.confidence == 0).all() and (none.chosen == -1).all()
    assert (none[none.ego_present].iou == 0).all()
    ok = samples[(samples.n_candidates > 0) & samples.ego_present]
    assert (ok.best_possible_iou > 0.99).all()  # the exact object masks are among the proposals
    sub = json.loads((out / "predictions.json").read_text())
    pred = sub["exo-ego"]["results"]["take-c"]["masks"]["cup_0"][f"{EXO}_{EGO}"]["0"]
    assert pred["pred_mask"]["size"] == [480, 480] and 0 < pred["confidence"] < 1
    for predictor in ("random", "largest", "nearest-position"):
        m = predict_reference(
            split_table=world["split"],
            subset="test",
            annotations=world["annotations"],
            proposals=world["proposals"],
            predictor=predictor,
            seed=0,
            samples_out=tmp_path / predictor / "samples.parquet",
            metrics_out=tmp_path / predictor / "metrics.json",
            direction="exo2ego",
        )
        # always "present" except the 3 samples of the frame without proposals: recall 8/11 and 0/1
        assert m["n_total"] == 12 and m["existence_balanced_acc"] == pytest.approx((8 / 11 + 0) / 2)
        assert json.loads((tmp_path / predictor / "metrics.json").read_text()) == m
    largest = pd.read_parquet(tmp_path / "largest" / "samples.parquet")
    assert largest.groupby(["take_uid", "frame"]).chosen.nunique().max() == 1


def test_on_the_fly_matches_float16_stores_within_rounding(world, tmp_path):
    from omama.features.backbones import load_backbone

    ann = world["annotations"][0]
    extract_features(
        annotation_json=ann,
        images_dir=world["images"][0],
        out_store=tmp_path / "take-a.zarr",
        backbone_cfg={**BACKBONE, "dtype": "float16"},
        workers=1,
    )
    corpus = Corpus([ann], [world["proposals"][0]], [str(tmp_path / "take-a.zarr")], [world["images"][0]])
    backbone = load_backbone(BACKBONE)
    geometry = corpus.geometry()
    rows = subset_rows(world["split"], "train", direction="exo2ego")
    rows = rows[rows.take_uid == "take-a"]
    idx = [0, 3, 7]
    b1 = collate([TrainingSet(rows, corpus, geometry, negatives=7, seed=0, stored=True, direction="exo2ego")[i] for i in idx])
    b2 = collate([TrainingSet(rows, corpus, geometry, negatives=7, seed=0, stored=False, direction="exo2ego")[i] for i in idx])
    (s1, d1), (s2, d2) = batch_features(b1), batch_features(b2, backbone)
    assert not torch.equal(d1, d2)
    torch.testing.assert_close(d1, d2, rtol=2**-10, atol=1e-4)
    from omama.model.setup import build_head

    head = build_head(geometry, seed=0, direction="exo2ego")
    sc1 = score_candidates(head, s1, d1, b1["src_mask"], b1["cand_masks"])
    sc2 = score_candidates(head, s2, d2, b2["src_mask"], b2["cand_masks"])
    torch.testing.assert_close(sc1, sc2, rtol=0, atol=2e-3)


def test_without_validation_rows_the_last_epoch_is_kept(world, tmp_path):
    df = pd.read_parquet(world["split"])
    df = df[df.split != "val"]
    write_parquet(tmp_path / "split.parquet", df)
    w = {**world, "split": tmp_path / "split.parquet"}
    history = train(w, tmp_path / "exp", cfg={**TRAIN, "epochs": 1})
    assert history[0]["val_iou"] is None
    assert json.loads((tmp_path / "exp/train/history.json").read_text())[0]["val_iou"] is None
    last = torch.load(tmp_path / "exp/train/checkpoints/last.pt", weights_only=False)["model"]
    model = torch.load(tmp_path / "exp/model.pt", weights_only=True)
    assert all(torch.equal(last[k], model[k]) for k in model)


@pytest.mark.slow
def test_workflow_retrains_from_scratch_after_a_split_or_proposer_change(tmp_path):
    """Snakemake re-runs ``train`` after the dataset's split seed or a proposer setting changes; the finished
    checkpoint left in the experiment's folder must not be resumed: the new model is a fresh run's."""
    from conftest import run_snakemake, tiny_config

    from omama.layout import Layout

    cfg = tiny_config()
    r = Layout("results")
    target = r.model("trained-frame")
    model, log = tmp_path / target, tmp_path / r.log("train", "exp").format(exp="trained-frame")
    run_snakemake(tmp_path, cfg, target)
    split_seed = lambda c: c["datasets"]["tabletop"]["split"].update(seed=1)
    for change in (split_seed, lambda c: c["proposers"]["classical"].update(max_iou=0.5)):
        before = model.read_bytes()
        change(cfg)
        run_snakemake(tmp_path, cfg, target)
        assert "training from scratch" in log.read_text() and "resuming" not in log.read_text(), log.read_text()
        retrained = model.read_bytes()
        assert retrained != before
        shutil.rmtree(tmp_path / r.checkpoints("trained-frame"))
        run_snakemake(tmp_path, cfg, target, "--forcerun", "train")
        assert model.read_bytes() == retrained, "the retrained model is not what a fresh run gives"


def test_prefetched_batches_keep_their_order_errors_and_stop_with_the_consumer():
    import threading

    from omama.io import FrameError
    from omama.model.batches import Prefetched

    built = []

    def batches():
        for i in range(6):
            built.append(i)
            if i == 4:
                raise FrameError("cannot decode frame image for take 't', camera 'c', frame 120")
            yield i

    got = []
    with pytest.raises(FrameError, match="take 't', camera 'c', frame 120"):  # the producer's own error
        for b in Prefetched(batches(), depth=2):
            got.append(b)
    assert got == [0, 1, 2, 3]
    assert list(Prefetched(range(7), depth=3)) == list(range(7)) and len(Prefetched(range(7))) == 7
    built.clear()
    for b in Prefetched(batches(), depth=1):  # the consumer stops early: nothing keeps running
        if b == 1:
            break
    assert built[:2] == [0, 1] and len(built) <= 4
    assert not [t for t in threading.enumerate() if t.name == "omama-prefetch"]


def test_loader_batches_are_the_same_with_worker_processes_and_orders_cover_every_row(world):
    from omama.model.batches import epoch_batches, training_loader

    corpus = Corpus(world["annotations"], world["proposals"], world["features"])
    rows = subset_rows(world["split"], "train", direction="exo2ego")
    dataset = TrainingSet(rows, corpus, corpus.geometry(), negatives=7, seed=3, stored=True, direction="exo2ego")
    batches = epoch_batches(rows, 5, 3, 1, "shuffled")
    assert sum(batches, []) == torch.randperm(len(rows), generator=torch.Generator().manual_seed(3 * 1009 + 1)).tolist()
    serial = list(training_loader(dataset, batches, 0, torch.device("cpu")))
    parallel = list(training_loader(dataset, batches, 2, torch.device("cpu")))
    assert len(serial) == len(parallel) == len(batches)
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert serial[0]["src_feat"].dtype == torch.float32  # the store's dtype (this world's stores are float32)
    one = collate([dataset[i] for i in batches[0]])
    assert all(torch.equal(one[k], serial[0][k]) for k in one)  # per-sample and whole-batch reads agree

    blocks = epoch_batches(rows, 5, 3, 1, "take-blocks")
    assert sorted(sum(blocks, [])) == list(range(len(rows))) and sum(blocks, []) != sum(batches, [])
    assert all(rows.take_uid.iloc[b].nunique() <= 2 for b in blocks)
    flat = rows.take_uid.iloc[sum(blocks, [])].tolist()
    assert sum(a != b for a, b in zip(flat, flat[1:])) == rows.take_uid.nunique() - 1  # each take's rows together
    with pytest.raises(ValueError, match="unknown batch order"):
        epoch_batches(rows, 5, 3, 1, "sorted")


def test_nan_weights_stop_training_and_prediction_naming_where(world, tmp_path):
    """Issue 24, siblings of defect 6 (non-finite features): a head whose weights hold NaN (tampered initial weights) trained
    and predicted silently, NaN confidences and all."""
    import torch

    from omama.model.setup import build_head
    from omama.model.takedata import Corpus

    geometry = Corpus(world["annotations"], world["proposals"], world["features"]).geometry()
    state = build_head(geometry, direction="exo2ego").state_dict()
    state["projection.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=rf"training loss is nan at epoch 1, batch 1: .*initial weights: {tmp_path}/nan.pt"):
        train(world, tmp_path / "t", init=tmp_path / "nan.pt")
    assert not (tmp_path / "t" / "model.pt").exists()
    with pytest.raises(ValueError, match=r"non-finite matching scores \(NaN or inf\) for take 'take-c', camera"):
        predict(world, tmp_path / "nan.pt", tmp_path / "p")
    assert not (tmp_path / "p" / "predictions.json").exists()
