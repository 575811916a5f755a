"""Official metrics against hand-computed cases, and the submission-file round trip."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from omama.data.masks import encode_rle, resize_mask
from omama.evaluation.metrics import (
    Bootstrap,
    boundary_f,
    boundary_map,
    evaluate,
    iou,
    location_error,
    score_masks,
    score_submission,
    summarise,
)
from omama.io import write_json


def box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_iou_hand_cases():
    p, g = box((4, 4), 0, 2, 0, 2), box((4, 4), 0, 2, 1, 4)
    assert iou(p, g) == pytest.approx(2 / (8 + 1e-7), abs=0)  # 4 + 6 - 2 px
    assert iou(np.zeros((3, 5), bool), np.zeros((3, 5), bool)) == 1.0
    assert iou(np.zeros((3, 5), bool), box((3, 5), 0, 1, 0, 1)) == 0.0


def test_boundary_is_the_davis_outline_and_f_uses_the_tolerance():
    one = box((6, 6), 2, 3, 2, 3)
    assert set(zip(*np.nonzero(boundary_map(one)))) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    shifted = box((6, 6), 2, 3, 4, 5)
    assert boundary_f(one, shifted) == pytest.approx(0.5)  # radius ceil(0.008 * 8.49) = 1: half of each outline matches
    assert boundary_f(one, one) == 1.0
    empty = np.zeros((6, 6), bool)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, one) == 0.0  # precision 1, recall 0
    assert boundary_f(one, empty) == 0.0  # precision 0, recall 1
    far = box((200, 200), 150, 160, 150, 160)
    near = box((200, 200), 151, 161, 151, 161)
    assert boundary_f(far, near) == 1.0  # 1 px off, tolerance ceil(0.008 * 282.8) = 3
    assert boundary_f(box((200, 200), 10, 20, 10, 20), far) == 0.0


def test_location_uses_floored_midpoints_and_the_hw_centre_quirk():
    g = box((270, 480), 30, 42, 10, 22)  # x 10..21 -> 15, y 30..41 -> 35
    p = box((270, 480), 30, 42, 14, 26)  # x 14..25 -> 19
    assert location_error(p, g) == pytest.approx(4 / math.sqrt(2 * 480**2))
    empty = np.zeros((270, 480), bool)
    assert location_error(empty, g) == pytest.approx(math.hypot(135 - 15, 240 - 35) / math.sqrt(2 * 480**2))


def ann(take_masks, annotated):
    return {"masks": take_masks, "subsample_idx": [0, 30, 60], "annotated_frames": annotated}


def test_submission_round_trip_matches_the_in_memory_scores(tmp_path):
    rng = np.random.default_rng(0)
    ego_native = {0: box((96, 96), 10, 40, 10, 40), 30: box((96, 96), 50, 90, 20, 70)}
    exo = {f: box((72, 128), 5, 30, 5, 30) for f in (0, 30, 60)}
    exo_other = {f: box((72, 128), 5, 30, 5, 30) for f in (0, 90)}
    gt = {
        "version": "xx",
        "challenge": "correspondence",
        "annotations": {
            "take-a": ann(
                {
                    "cup_0": {
                        "aria01_214-1": {str(f): encode_rle(m) for f, m in ego_native.items()},
                        "cam01": {str(f): encode_rle(m) for f, m in exo.items()},
                        "cam02": {str(f): encode_rle(m) for f, m in exo_other.items()},
                    }
                },
                {"cup_0": {"aria01_214-1": [0, 30, 60], "cam01": [0, 30, 60], "cam02": [0, 90]}},
            ),
        },
    }
    preds, expected = {}, []
    scored = [("cam01", 0), ("cam01", 30), ("cam01", 60), ("cam02", 0)]  # cam02 frame 90 is not ego-annotated
    for exo_cam, f in scored:
        pm = rng.random((480, 480)) > 0.7
        conf = float(rng.random())
        preds.setdefault(f"{exo_cam}_aria01_214-1", {})[str(f)] = {"pred_mask": encode_rle(pm), "confidence": conf}
        if f in ego_native:
            expected.append(score_masks(pm, resize_mask(ego_native[f], 480, 480)))
    sub = {
        "exo-ego": {
            "version": "xx",
            "challenge": "correspondence",
            "results": {"take-a": {"masks": {"cup_0": preds}, "subsample_idx": [0, 30, 60]}},
        }
    }
    write_json(tmp_path / "predictions.json", sub)
    write_json(tmp_path / "ground_truth.json", gt)
    metrics = evaluate(tmp_path / "predictions.json", tmp_path / "ground_truth.json")
    frames = score_submission(sub, gt)
    assert metrics == summarise(frames)
    assert metrics["n_total"] == 4 and metrics["n_present"] == 3
    ious = [e[0] for e in expected]
    assert metrics["iou"] == pytest.approx(np.mean(ious))
    assert metrics["iou_std"] == pytest.approx(np.std(ious))
    assert metrics["shape_acc"] == pytest.approx(np.mean([e[1] for e in expected]))
    assert metrics["location_score"] == pytest.approx(np.mean([e[2] for e in expected]))
    assert metrics["protocol"] == "official challenge evaluator"

    del sub["exo-ego"]["results"]["take-a"]["masks"]["cup_0"]["cam01_aria01_214-1"]["60"]
    with pytest.raises(KeyError, match="take 'take-a', object 'cup_0', camera 'cam01', frame '60'"):
        score_submission(sub, gt)
    sub["exo-ego"]["results"]["take-a"]["masks"]["cup_0"]["cam01_aria01_214-1"]["60"] = {
        "pred_mask": encode_rle(np.zeros((96, 96), bool)),
        "confidence": 0.1,
    }
    sub["exo-ego"]["results"]["take-a"]["masks"]["cup_0"]["cam01_aria01_214-1"]["0"]["pred_mask"] = encode_rle(
        np.zeros((96, 96), bool)
    )
    with pytest.raises(ValueError, match=r"evaluation size is \(480, 480\)"):
        score_submission(sub, gt)


def test_existence_balanced_accuracy_over_all_scored_frames():
    import pandas as pd

    frames = pd.DataFrame(
        {
            "ego_present": [True, True, False, False, True],
            "pred_exists": [True, False, False, True, True],
            "iou": [0.5, 0.0, np.nan, np.nan, 1.0],
            "shape": [1.0, 0.0, np.nan, np.nan, 1.0],
            "location": [0.1, 0.2, np.nan, np.nan, 0.0],
        }
    )
    m = summarise(frames)
    assert m["existence_balanced_acc"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["iou"] == pytest.approx(0.5) and m["n_present"] == 3 and m["n_total"] == 5


def test_corrupt_files_name_the_file(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    write_json(tmp_path / "g.json", {"annotations": {}})
    with pytest.raises(ValueError, match="predictions"):
        evaluate(tmp_path / "p.json", tmp_path / "g.json")


def test_object_never_in_ego_is_in_the_written_ground_truth_and_counted_for_existence(tmp_path):
    """Regression: the ego key of an object absent in ego on every scored frame was dropped, and
    the official evaluator skips objects without it, so absent frames vanished from existence."""
    import pandas as pd

    from omama.evaluation.predict import ReferenceChooser, run_predictions
    from omama.io import write_parquet
    from omama.model.takedata import Corpus

    ego, exo, hw, frames = "aria01_214-1", "cam01", (64, 64), [0, 30]
    cup = {f: box(hw, 10 + f // 10, 30, 10, 40) for f in frames}
    ann = {
        "take_uid": "take-a",
        "ego_cam": ego,
        "exo_cams": [exo],
        "native_size": {ego: list(hw), exo: [48, 80]},
        "subsample_idx": frames,
        "masks": {
            "cup_0": {
                ego: {str(f): encode_rle(m) for f, m in cup.items()},
                exo: {str(f): encode_rle(box((48, 80), 5, 20, 5, 20)) for f in frames},
            },
            # pen_0 is annotated in ego but never visible there: no ego masks at all
            "pen_0": {exo: {str(f): encode_rle(box((48, 80), 25, 40, 50, 70)) for f in frames}},
        },
        "annotated_frames": {o: {ego: frames, exo: frames} for o in ("cup_0", "pen_0")},
    }
    write_json(tmp_path / "take-a" / "annotation.json", ann)
    props = [
        {
            "frame": f,
            "proposal": 0,
            "height": hw[0],
            "width": hw[1],
            "counts": encode_rle(cup[f])["counts"],
            "x": 10,
            "y": 10,
            "w": 30,
            "h": 20,
            "score": 1.0,
            "area": int(cup[f].sum()),
        }
        for f in frames
    ]
    write_parquet(tmp_path / "take-a.parquet", pd.DataFrame(props))
    rows = pd.DataFrame(
        [
            {
                "take_uid": "take-a",
                "object": o,
                "exo_cam": exo,
                "ego_cam": ego,
                "frame": f,
                "split": "test",
                "scenario": "s",
                "label": o[:-2],
                "ego_area": int(cup[f].sum()) if o == "cup_0" else 0,
                "ego_present": o == "cup_0",
            }
            for f in frames
            for o in ("cup_0", "pen_0")
        ]
    )
    corpus = Corpus([str(tmp_path / "take-a" / "annotation.json")], [str(tmp_path / "take-a.parquet")])
    sub, gt, samples = run_predictions(rows, corpus, ReferenceChooser("largest", 0, direction="exo2ego"))
    assert gt["annotations"]["take-a"]["masks"]["pen_0"][ego] == {}  # the key is kept, with no masks
    write_json(tmp_path / "predictions.json", sub)
    write_json(tmp_path / "ground_truth.json", gt)
    metrics = evaluate(tmp_path / "predictions.json", tmp_path / "ground_truth.json")
    assert metrics["n_total"] == 4 and metrics["n_present"] == 2  # pen_0's two absent frames count
    # "largest" always claims presence: recall 1 on present frames, 0 on absent ones
    assert metrics["existence_balanced_acc"] == pytest.approx(0.5)
    assert metrics == summarise(samples)
    assert sorted(samples.loc[~samples.ego_present, "object"]) == ["pen_0", "pen_0"]


def test_object_without_an_ego_key_is_skipped_like_the_official_evaluator(caplog):
    """An externally written ground truth without the ego key: the official evaluator skips the
    object; so does omama, and it says so."""
    ego = "aria01_214-1"
    gt = {
        "annotations": {
            "take-a": ann(
                {
                    "cup_0": {
                        ego: {"0": encode_rle(box((96, 96), 10, 40, 10, 40))},
                        "cam01": {"0": encode_rle(box((72, 128), 5, 30, 5, 30))},
                    },
                    "pen_0": {"cam01": {"0": encode_rle(box((72, 128), 5, 30, 5, 30))}},
                },
                {"cup_0": {ego: [0], "cam01": [0]}, "pen_0": {ego: [0], "cam01": [0]}},
            )
        }
    }
    pred = {"pred_mask": encode_rle(box((480, 480), 0, 10, 0, 10)), "confidence": 0.9}
    sub = {
        "exo-ego": {
            "results": {
                "take-a": {"masks": {o: {f"cam01_{ego}": {"0": pred}} for o in ("cup_0", "pen_0")}, "subsample_idx": [0]}
            }
        }
    }
    with caplog.at_level("WARNING", logger="omama.evaluation.metrics"):
        frames = score_submission(sub, gt)
    assert list(frames.object) == ["cup_0"]
    assert frames.attrs["skipped_objects"] == ["take 'take-a', object 'pen_0'"]
    assert "pen_0" in caplog.text and "1 object(s) skipped" in caplog.text


@pytest.mark.slow
def test_pipeline_files_are_what_the_official_evaluator_requires(tiny_run):
    """Every predictions/ground-truth pair the tiny run wrote (each experiment on each dataset it is evaluated
    on: the synthetic takes and the photo pairs): the structure the challenge evaluator asserts, every predicted mask at the official
    evaluation size of its ego camera, every object with its ego key, and metrics.json equal to
    omama's metric code run on the files."""
    import json

    from test_masks import official_eval_size  # the evaluator's formula, written in the test

    from omama.data.masks import decode_rle
    from omama.layout import Layout

    r = Layout(str(tiny_run / "results"))
    dirs = sorted(p.parent for p in Path(r.root).rglob("predictions.json"))
    # results/experiments/<exp>/<dataset>/<subset>/: each experiment on the synthetic takes and the photo pairs
    assert {d.relative_to(r.root).parts[0] for d in dirs} == {"experiments"}
    assert {d.parent.name for d in dirs} == {"tabletop", "photos"}
    for d in dirs:
        assert str(d / "predictions.json") == r.result("predictions.json", d.parents[1].name, d.parent.name, d.name)
        data = r.data(d.parent.name)
        gt = json.loads((d / "ground_truth.json").read_text())["annotations"]
        sub = json.loads((d / "predictions.json").read_text())["exo-ego"]["results"]
        assert set(sub) == set(gt), d
        n_scored = n_present = 0
        for take, ann in gt.items():
            native = json.loads(Path(data.annotation(take)).read_text())["native_size"]
            assert set(sub[take]["masks"]) == set(ann["masks"]) and "subsample_idx" in sub[take]
            for obj, cams in ann["masks"].items():
                ego = [c for c in cams if "aria" in c]
                assert len(ego) == 1, (d, take, obj)  # the evaluator skips an object without it
                ego = ego[0]
                size = list(official_eval_size(*native[ego]))
                for exo in (c for c in cams if c != ego):
                    preds = sub[take]["masks"][obj][f"{exo}_{ego}"]
                    assert set(preds) == set(cams[exo]), (d, take, obj, exo)
                    for frame, p in preds.items():
                        assert set(p) >= {"pred_mask", "confidence"}
                        assert p["pred_mask"]["size"] == size and list(decode_rle(p["pred_mask"]).shape) == size
                        if int(frame) in ann["annotated_frames"][obj][ego]:
                            n_scored += 1
                            n_present += frame in cams[ego]
                for frame, rle in cams[ego].items():
                    assert list(rle["size"]) == native[ego], (d, take, obj, frame)
        metrics = json.loads((d / "metrics.json").read_text())
        assert (metrics["n_total"], metrics["n_present"]) == (n_scored, n_present), d
        again = evaluate(d / "predictions.json", d / "ground_truth.json")
        for k, v in again.items():
            assert v == metrics[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(metrics[k])), (d, k)


# ---------------------------------------------------------------------------- bootstrap intervals over takes


def frames_of(takes: dict[str, int], rng, absent: float = 0.3):
    """Scored frames: ``takes`` maps take uid -> number of frames; random scores and existence."""
    import pandas as pd

    parts = []
    for t, n in takes.items():
        present = rng.random(n) > absent
        iou_t = rng.random(n)
        parts.append(
            pd.DataFrame(
                {
                    "take_uid": t,
                    "ego_present": present,
                    "pred_exists": rng.random(n) > 0.4,
                    "iou": np.where(present, iou_t, np.nan),
                    "shape": np.where(present, rng.random(n), np.nan),
                    "location": np.where(present, rng.random(n) * 0.3, np.nan),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_bootstrap_resamples_takes_not_samples():
    import pandas as pd

    # two takes of 200 present frames each, IoU constant 0 in one and 1 in the other: resampling takes can
    # draw take A twice (mean 0) or take B twice (mean 1), a quarter of the time each; resampling the 400
    # frames would give a narrow interval around 0.5
    frames = pd.DataFrame(
        {
            "take_uid": ["A"] * 200 + ["B"] * 200,
            "ego_present": True,
            "pred_exists": True,
            "iou": [0.0] * 200 + [1.0] * 200,
            "shape": 0.5,
            "location": 0.1,
        }
    )
    m = summarise(frames, bootstrap=Bootstrap(resamples=1000, level=0.95, seed=0))
    assert m["iou"] == 0.5 and m["ci95"]["iou"] == [0.0, 1.0]
    assert m["ci95"]["shape_acc"] == [0.5, 0.5]
    # every frame is present: the balanced accuracy of every resample has one true class and is skipped
    assert m["ci95"]["existence_balanced_acc"] is None
    assert m["bootstrap"]["undefined"] == {"iou": 0, "shape_acc": 0, "location_score": 0, "existence_balanced_acc": 1000}
    assert m["bootstrap"]["unit"] == "take" and m["bootstrap"]["units"] == 2
    counts = Bootstrap(resamples=1000, level=0.95, seed=0).counts(2)
    assert counts.shape == (1000, 2) and (counts.sum(1) == 2).all()
    assert 0.2 < (counts[:, 0] == 2).mean() < 0.3 and 0.4 < (counts[:, 0] == 1).mean() < 0.6


def test_each_resample_is_the_point_estimate_of_the_drawn_takes_with_duplicates():
    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score

    from omama.evaluation.metrics import resample_metrics

    rng = np.random.default_rng(1)
    frames = frames_of({f"t{i:02d}": int(rng.integers(1, 40)) for i in range(12)}, rng)
    boot = Bootstrap(resamples=300, level=0.95, seed=5)
    counts = boot.counts(12)
    values = resample_metrics(frames, counts)
    takes = sorted(frames["take_uid"].unique())
    checked_bal = 0
    for r in range(0, 300, 7):
        drawn = pd.concat([frames[frames.take_uid == t] for t, c in zip(takes, counts[r]) for _ in range(c)])
        expect = summarise(drawn)
        for key in ("iou", "shape_acc", "location_score"):
            assert values[key][r] == pytest.approx(expect[key], rel=1e-12, abs=1e-15)
        truth = drawn["ego_present"].to_numpy(bool)
        if truth.all() or not truth.any():
            assert np.isnan(values["existence_balanced_acc"][r])
        else:  # bit-identical to scikit-learn
            assert values["existence_balanced_acc"][r] == balanced_accuracy_score(truth, drawn["pred_exists"].to_numpy(bool))
            checked_bal += 1
    assert checked_bal > 30


def test_bootstrap_is_deterministic_given_the_seed_and_fast():
    import time

    rng = np.random.default_rng(2)
    frames = frames_of({f"take-{i}": int(rng.integers(10, 60)) for i in range(100)}, rng)
    assert len(frames) > 3000
    start = time.perf_counter()
    a = summarise(frames, bootstrap=Bootstrap(resamples=1000, level=0.95, seed=3))
    elapsed = time.perf_counter() - start
    b = summarise(frames.sample(frac=1, random_state=0), bootstrap=Bootstrap(resamples=1000, level=0.95, seed=3))
    c = summarise(frames, bootstrap=Bootstrap(resamples=1000, level=0.95, seed=4))
    assert a == summarise(frames.copy(), bootstrap=Bootstrap(resamples=1000, level=0.95, seed=3))  # bit-identical
    for key, ci in a["ci95"].items():  # the draws are of sorted take uids: row order changes only rounding
        assert b["ci95"][key] == pytest.approx(ci, rel=1e-12)
    assert a["ci95"] != c["ci95"]
    for key, (lo, hi) in a["ci95"].items():
        assert lo < a[key] < hi and hi - lo < 0.2
    assert elapsed < 1.5, f"summarise with 1,000 resamples took {elapsed:.2f} s"
    assert "ci90" in summarise(frames, bootstrap=Bootstrap(resamples=1000, level=0.9, seed=0))


def test_difference_intervals_paired_and_unpaired():
    from omama.evaluation.metrics import difference_interval, mean_interval

    rng = np.random.default_rng(4)
    takes = np.repeat([f"t{i}" for i in range(20)], 15)
    a = rng.random(len(takes))
    b = a + 0.02 + rng.normal(0, 0.01, len(takes))  # b better on every sample by about 0.02
    boot = Bootstrap(resamples=1000, level=0.95, seed=0)
    lo, hi = mean_interval(b - a, takes, boot)
    assert 0.015 < lo < 0.02 < hi < 0.025  # paired: the per-sample differences are consistent
    lo_u, hi_u = difference_interval(a, takes, b, takes, boot)
    assert lo_u < 0 < hi_u  # unpaired: the spread of IoU between samples swamps 0.02
    assert mean_interval([], [], boot) is None


def test_written_out_disk_and_balanced_accuracy_equal_the_libraries_the_evaluator_calls():
    """The official evaluators call scikit-image's disk and scikit-learn's balanced_accuracy_score; ours
    are written out (cheaper imports) and must agree on every input, one-class truths included."""
    from skimage.morphology import disk as skimage_disk
    from sklearn.metrics import balanced_accuracy_score as sklearn_bal

    from omama.evaluation.metrics import balanced_accuracy_score, disk

    for r in range(0, 12):
        assert np.array_equal(disk(r), skimage_disk(r))
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40):
        for p in (0.0, 0.3, 1.0):
            y = rng.random(n) < p
            pred = rng.random(n) < 0.5
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn warns on a class missing from y_true
                assert balanced_accuracy_score(y, pred) == pytest.approx(sklearn_bal(y, pred), abs=1e-12)
