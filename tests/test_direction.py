"""The ego->exo direction: unpadded submission geometry, evaluate_egoexo scoring, the ego-exo
submission format, pairs of both directions, and a tiny end-to-end run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from omama.data.masks import decode_rle, encode_rle
from omama.data.pairs import take_pairs
from omama.direction import Direction
from omama.evaluation.metrics import evaluate, score_submission
from omama.evaluation.predict import ReferenceChooser, run_predictions
from omama.io import write_json, write_parquet
from omama.model.takedata import Corpus

EGO, EXO, EXO2 = "aria01_214-1", "cam01", "cam02"


def box(shape, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def egoexo_files(tmp_path: Path):
    """Hand-made ego-exo ground truth and predictions: native exo frames 90x160 (evaluated at 270x480)."""
    exo_shape, ego_shape = (90, 160), (64, 64)
    gt_exo = box(exo_shape, 20, 50, 30, 90)
    ego = {str(f): encode_rle(box(ego_shape, 10, 30, 10, 30)) for f in (0, 30, 60)}
    gt = {
        "version": "xx",
        "challenge": "correspondence",
        "annotations": {
            "t": {
                "masks": {"cup_0": {EGO: ego, EXO: {"0": encode_rle(gt_exo)}}},
                "annotated_frames": {"cup_0": {EGO: [0, 30, 60], EXO: [0, 30]}},  # frame 60 not annotated in exo: not scored
                "subsample_idx": [0, 30, 60],
            }
        },
    }
    pred_eval = box((270, 480), 70, 140, 100, 260)  # at the evaluation size, unpadded
    preds = {
        "0": {"pred_mask": encode_rle(pred_eval), "confidence": 0.9},
        "30": {"pred_mask": encode_rle(pred_eval), "confidence": 0.2},
        "60": {"pred_mask": encode_rle(pred_eval), "confidence": 0.9},
    }
    sub = {
        "ego-exo": {
            "version": "xx",
            "challenge": "correspondence",
            "results": {"t": {"masks": {"cup_0": {f"{EGO}_{EXO}": preds}}, "subsample_idx": [0, 30, 60]}},
        }
    }
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "pred.json", sub)
    return gt_exo, pred_eval


def test_egoexo_metrics_equal_a_computation_from_the_spec(tmp_path):
    gt_exo, pred_eval = egoexo_files(tmp_path)
    # the spec: GT resized (nearest) to longer side 480 = 270x480; the prediction at that size as it stands
    gt480 = cv2.resize(gt_exo.astype(np.uint8), (480, 270), interpolation=cv2.INTER_NEAREST).astype(bool)
    pred480 = pred_eval
    iou = (gt480 & pred480).sum() / (gt480 | pred480).sum()
    ys, xs = np.nonzero(gt480)
    py, px = np.nonzero(pred480)
    mid = lambda xs, ys: ((xs.min() + xs.max()) // 2, (ys.min() + ys.max()) // 2)
    (gx, gy), (qx, qy) = mid(xs, ys), mid(px, py)
    m = evaluate(tmp_path / "pred.json", tmp_path / "gt.json")
    assert m["n_total"] == 2 and m["n_present"] == 1  # frames 0 (present) and 30 (absent in exo); 60 not annotated
    assert m["iou"] == pytest.approx(iou, abs=1e-6) and 0.1 < iou < 0.9
    assert m["location_score"] == pytest.approx(np.hypot(gx - qx, gy - qy) / np.sqrt(2 * 480**2))
    assert m["existence_balanced_acc"] == 1.0  # 0.9 > 0.5 present; 0.2 absent
    frames = score_submission(json.loads((tmp_path / "pred.json").read_text()), json.loads((tmp_path / "gt.json").read_text()))
    assert list(frames["exo_present"]) == [True, False] and list(frames["frame"]) == [0, 30]


def test_egoexo_padded_square_prediction_is_a_named_error(tmp_path):
    """The earlier evaluator's 480x480 padded squares no longer pass: the official evaluator would fail on them."""
    _, pred_eval = egoexo_files(tmp_path)
    square = np.zeros((480, 480), bool)
    square[105:375] = pred_eval
    sub = json.loads((tmp_path / "pred.json").read_text())
    sub["ego-exo"]["results"]["t"]["masks"]["cup_0"][f"{EGO}_{EXO}"]["0"]["pred_mask"] = encode_rle(square)
    write_json(tmp_path / "pred.json", sub)
    with pytest.raises(ValueError, match=r"\(480, 480\), the evaluation size is \(270, 480\).*cup_0.*cam01"):
        evaluate(tmp_path / "pred.json", tmp_path / "gt.json")


def small_take(tmp_path: Path) -> tuple[dict, pd.DataFrame, Corpus]:
    """One take, one object, two exo cameras (native 90x160): visible in ego at frames 0, 30, 60; in
    cam01 at 0 and 30, absent from cam02 at 30; cam02 did not annotate frame 60."""
    ego_shape, exo_shape = (64, 64), (90, 160)
    ego = {str(f): encode_rle(box(ego_shape, 10, 30, 10 + f // 10, 30 + f // 10)) for f in (0, 30, 60)}
    exo1 = {str(f): encode_rle(box(exo_shape, 20, 50, 30 + f, 90 + f)) for f in (0, 30)}
    exo2 = {"0": encode_rle(box(exo_shape, 40, 80, 10, 50))}
    ann = {
        "take_uid": "take-a",
        "take_name": "a",
        "scenario": "s",
        "parent_scenario": "p",
        "ego_cam": EGO,
        "exo_cams": [EXO, EXO2],
        "subsample_idx": [0, 30, 60],
        "native_size": {EGO: list(ego_shape), EXO: list(exo_shape), EXO2: list(exo_shape)},
        "masks": {"cup_0": {EGO: ego, EXO: exo1, EXO2: exo2}},
        "annotated_frames": {"cup_0": {EGO: [0, 30, 60], EXO: [0, 30, 60], EXO2: [0, 30]}},
    }
    write_json(tmp_path / "take-a" / "annotation.json", ann)
    rows = []
    for cam, masks in ((EXO, exo1), (EXO2, exo2)):
        for f in (0, 30, 60):
            m = decode_rle(masks[str(f)]) if str(f) in masks else box(exo_shape, 0, 10, 0, 10)
            rows.append(
                {
                    "camera": cam,
                    "frame": f,
                    "proposal": 0,
                    "height": 90,
                    "width": 160,
                    "counts": encode_rle(m)["counts"],
                    "x": 0,
                    "y": 0,
                    "w": 1,
                    "h": 1,
                    "score": 1.0,
                    "area": int(m.sum()),
                }
            )
    df = pd.DataFrame(rows)
    df.attrs = {"take_uid": "take-a", "cameras": {c: {"frames": [0, 30, 60], "image_size": [90, 160]} for c in (EXO, EXO2)}}
    write_parquet(tmp_path / "exo" / "take-a.parquet", df)
    write_parquet(
        tmp_path / "take-a.parquet",
        pd.DataFrame(columns=["frame", "proposal", "height", "width", "counts", "x", "y", "w", "h", "score", "area"]),
    )
    pairs, _ = take_pairs(ann, "train", direction="ego2exo")
    split = pd.DataFrame(pairs).assign(split="test")
    corpus = Corpus(
        [str(tmp_path / "take-a" / "annotation.json")],
        [str(tmp_path / "take-a.parquet")],
        exo_proposals=[str(tmp_path / "exo" / "take-a.parquet")],
    )
    return ann, split, corpus


def test_ego2exo_pairs_submission_keys_and_frames(tmp_path):
    ann, rows, corpus = small_take(tmp_path)
    # pairs: every ego mask frame the exo camera annotated; cam02 misses frame 60 (not annotated) and has cup_0 at 0 only
    assert sorted(zip(rows.exo_cam, rows.frame, rows.exo_present)) == [
        (EXO, 0, True),
        (EXO, 30, True),
        (EXO, 60, False),
        (EXO2, 0, True),
        (EXO2, 30, False),
    ]
    sub, gt, samples = run_predictions(rows, corpus, ReferenceChooser("largest", 0, direction="ego2exo"))
    assert list(sub) == ["ego-exo"]
    masks = sub["ego-exo"]["results"]["take-a"]["masks"]["cup_0"]
    assert sorted(masks) == [f"{EGO}_{EXO}", f"{EGO}_{EXO2}"]
    assert sorted(masks[f"{EGO}_{EXO}"], key=int) == ["0", "30", "60"] and sorted(masks[f"{EGO}_{EXO2}"], key=int) == [
        "0",
        "30",
    ]
    # exo frames of 90x160 are evaluated at 270x480: the predictions have that size, unpadded
    assert all(p["pred_mask"]["size"] == [270, 480] for per in masks.values() for p in per.values())
    # the ground truth in the ego-exo layout: the ego (source) masks, the exo masks, both cameras' annotated frames
    g = gt["annotations"]["take-a"]
    assert sorted(g["masks"]["cup_0"][EGO], key=int) == ["0", "30", "60"]
    assert sorted(g["masks"]["cup_0"][EXO2]) == ["0"] and g["annotated_frames"]["cup_0"][EXO2] == [0, 30]
    # the official validation: a prediction for every ego-annotated frame of every exo camera key
    for cam in (EXO, EXO2):
        assert set(g["masks"]["cup_0"][EGO]) >= set(masks[f"{EGO}_{cam}"])
    # largest = the only proposal = the exact exo mask where present
    assert len(samples) == 5 and samples.loc[samples.exo_present, "iou"].min() > 0.99
    assert Direction("ego2exo").mask_key(EGO, EXO) == f"{EGO}_{EXO}"
    write_json(tmp_path / "p.json", sub)
    write_json(tmp_path / "g.json", gt)
    m = evaluate(tmp_path / "p.json", tmp_path / "g.json")
    assert m["n_total"] == 5 and m["n_present"] == 3 and m["iou"] > 0.99


@pytest.mark.slow
def test_tiny_run_with_an_ego2exo_experiment(tmp_path):
    from conftest import run_snakemake, tiny_config

    from omama.layout import Layout

    cfg = tiny_config(results="res")
    exp = "trained-ego2exo"
    assert cfg["experiments"][exp]["direction"] == "ego2exo" and cfg["experiments"][exp]["dataset"] == "tabletop"
    r = Layout("res")
    d = r.data("tabletop")
    refs = [
        d.reference("metrics.json", "frame", "classical", "test", p, "ego2exo")
        for p in ("random", "largest", "nearest-position")
    ]
    result = lambda name: tmp_path / r.result(name, exp, "tabletop", "test")
    run_snakemake(tmp_path, cfg, r.result("metrics.json", exp, "tabletop", "test"), *refs)
    pairs = json.loads((tmp_path / d.pairs_summary()).read_text())
    assert pairs["ego2exo"]["pairs"] > 0 and pairs["ego2exo"]["exo_absent"] > 0
    sub = json.loads(result("predictions.json").read_text())
    gt = json.loads(result("ground_truth.json").read_text())
    assert list(sub) == ["ego-exo"]
    for take, g in gt["annotations"].items():
        for obj, cams in g["masks"].items():
            exo = [c for c in cams if "aria" not in c]
            assert sorted(sub["ego-exo"]["results"][take]["masks"][obj]) == sorted(f"{EGO}_{c}" for c in exo)
    m = json.loads(result("metrics.json").read_text())
    computed = evaluate(result("predictions.json"), result("ground_truth.json"))
    assert {k: m[k] for k in computed} == pytest.approx(computed, nan_ok=True)  # metrics.json adds the intervals
    assert all((tmp_path / d.exo_proposals("classical", t)).is_file() for t in gt["annotations"])
    samples = pd.read_parquet(result("samples.parquet"))
    assert "exo_present" in samples and len(samples) == m["n_total"]


def test_report_section_shows_both_directions_with_their_own_references(tmp_path):
    from omama.layout import Layout
    from omama.report.directions import section
    from omama.report.inputs import Inputs

    boot = {"level": 0.95}
    layout = Layout(str(tmp_path))
    written = []

    def metrics(path: str, iou: float):
        write_json(
            path,
            {
                "iou": iou,
                "shape_acc": 0.5,
                "location_score": 0.1,
                "existence_balanced_acc": 0.5,
                "n_present": 4,
                "n_total": 5,
                "bootstrap": boot,
                "ci95": {"iou": [iou - 0.01, iou + 0.01]},
            },
        )
        written.append(path)

    # as the report passes them: each experiment's settings on the dataset (the split it uses there, its subsets)
    x = {"split": "frame", "proposer_name": "classical", "backbone_name": "b", "subsets": ["test"]}
    experiments = {"a": {**x, "direction": "exo2ego"}, "e": {**x, "direction": "ego2exo"}}
    for exp, iou in (("a", 0.4), ("e", 0.3)):
        metrics(layout.result("metrics.json", exp, "tabletop", "test"), iou)
    for direction, ious in (("exo2ego", (0.2, 0.1)), ("ego2exo", (0.05, 0.08))):
        for ref, iou in zip(("largest", "random"), ious):
            metrics(layout.data("tabletop").reference("metrics.json", "frame", "classical", "test", ref, direction), iou)
    files = lambda declared: Inputs(layout, declared).data("tabletop")
    s = section(files(written), experiments, ["test"], ["largest", "random"])
    cells = re.findall(r"<td>([^<]*)</td>", s["table"])
    assert [c for c in cells if "→" in c] == ["exo→ego"] * 3 + ["ego→exo"] * 3
    row_e = cells[cells.index("e") - 2 : cells.index("e") + 8]
    assert row_e[:4] == ["ego→exo", "test", "e", "frame"] and row_e[4] == "0.3000 [0.290, 0.310]"
    assert re.findall(r"<td>([^<]*)</td>", s["ratios"]) == ["e", "test", "0.3000", "0.0800", "3.75×"]  # not the exo->ego refs
    assert section(files(written), {"a": experiments["a"]}, ["test"], ["largest"]) is None
    with pytest.raises(ValueError, match="does not declare"):  # the section reads only declared files
        section(files(written[:-1]), experiments, ["test"], ["largest", "random"])
