"""A small results tree in the contracted formats, fabricated for report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from PIL import Image

from omama.data.masks import encode_rle, eval_size, resize_mask
from omama.data.splits import diagnostics
from omama.evaluation.metrics import Bootstrap, summarise
from omama.io import write_json, write_parquet
from omama.layout import Layout

EGO, EXOS = "aria01_214-1", ["cam01", "cam02"]
EGO_HW, EXO_HW = (48, 48), (36, 64)
FRAMES = [0, 30, 60]
OBJECTS = ["bowl_0", "cup_1"]
PAIRS = ["pairA", "pairB"]  # the photo pairs of each photo-pair set


def box_mask(hw, y, x, h, w) -> np.ndarray:
    m = np.zeros(hw, bool)
    m[y : y + h, x : x + w] = True
    return m


def fabricate(
    root: Path,
    experiments: dict,
    subsets=("test",),
    references=("random",),
    n_takes: int = 2,
    robustness: list[str] | None = None,
) -> list[str]:
    """Write every file the report reads under ``root`` (``robustness``: experiments scored on both
    photo-pair sets, robustness and motorcycle); returns the take uids."""
    rng = np.random.default_rng(0)
    r = Layout(str(root))
    takes = [f"take{i}" for i in range(n_takes)]
    rows = []
    for ti, take in enumerate(takes):
        write_frames(r, take, EGO, EXOS, rng, rows, annotation_split="train" if ti else "val")
        zarr.open_group(r.features("tiny", take), mode="w", zarr_format=3).attrs.update(
            {
                "take_uid": take,
                "backbone": {
                    "kind": "dinov2",
                    "weights": "untrained",
                    "untrained": True,
                    "grid": {"ego": [8, 8], "exo": [6, 10]},
                },
                "dtype": "float16",
                "frames": FRAMES,
                "cameras": [],
                "complete": True,
            }
        )
        rec = pd.DataFrame(
            [
                {"take_uid": take, "object": o, "frame": f, "gt_area": 100, "best_iou": rng.uniform(0.3, 1), "n_proposals": 7}
                for o in OBJECTS
                for f in FRAMES
            ]
        )
        write_parquet(r.recall("classical", take), rec)
    pairs = pd.DataFrame(rows)
    for split in {x["split"] for x in experiments.values()}:
        s = pairs.assign(
            split=np.where(np.arange(len(pairs)) % 3 == 0, "train", np.where(np.arange(len(pairs)) % 3 == 1, "val", "test"))
        )
        write_parquet(r.split(split), s)
        write_json(r.split_diagnostics(split), diagnostics(s, split, [0.7, 0.15, 0.15], 0))
    write_json(
        r.index_summary(),
        {
            "source": "results/synthetic",
            "takes_in_annotations": n_takes + 1,
            "selected": n_takes,
            "frames": 3 * n_takes,
            "left_out": {"empty object_masks": 1},
            "skipped_takes": [{"take_uid": "t-empty", "take_name": "empty_1", "reason": "empty object_masks"}],
        },
    )
    write_json(
        r.pairs_summary(),
        {
            "pairs": len(pairs),
            "skipped": {"frame not annotated in ego": 2},
            "ego2exo": {"pairs": 0, "skipped": {"ego mask at a frame not annotated in the exo camera": 3}},
        },
    )
    vis = pairs[["take_uid", "object", "ego_cam", "frame"]].drop_duplicates().rename(columns={"ego_cam": "camera"})
    write_parquet(r.visibility(), vis.assign(visible_fraction=rng.uniform(0, 1, len(vis)), area=100))
    for name, x in experiments.items():
        head = x.get("existence") == "head"
        for s in subsets:
            write_experiment(lambda f: r.result(f, name, s), s, pairs, rng, similarity=head)
            for ref in references:
                write_experiment(lambda f: r.reference(f, x["split"], x["proposer"], s, ref), s, pairs, rng)
                if x.get("direction") == "ego2exo":
                    write_experiment(lambda f: r.reference_ego2exo(f, x["split"], x["proposer"], s, ref), s, pairs, rng)
        if head:
            validation = {
                "fitted": True,
                "n": 12,
                "n_present": 8,
                "n_absent": 4,
                "balanced_accuracy": 0.9,
                "balanced_accuracy_uncalibrated": 0.85,
                "balanced_accuracy_similarity": 0.5,
            }
            write_json(
                r.existence("calibration.json", name), {"scale": 0.5, "bias": 1.5, "boundary": -3.0, "validation": validation}
            )
        if x.get("train"):
            write_json(
                r.history(name),
                [{"epoch": e, "train_loss": 3 - e, "val_iou": 0.1 * e, "lr": 1e-4, "seconds": 2.0} for e in (1, 2)],
            )
    for stage, job in [("extract", "take0"), ("extract", "take1"), ("features", "tiny/take0"), ("train", "trained")]:
        p = Path(r.benchmark(f"{stage}/{job}"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{rng.uniform(1, 9):.4f}\t0:00:01\t120.5\t300.1\t100.0\t101.0\t0.0\t1.0\t50.0\t1.2\n"
        )
    for rset in ["robustness", "motorcycle"] if robustness else []:
        rrows, rr = [], r.photo_set(rset)
        for pair in PAIRS:
            write_frames(rr, pair, "ego", ["exo"], rng, rrows, frames=[0])
        rp = pd.DataFrame(rrows)
        write_json(rr.index(), [{"take_uid": p} for p in PAIRS])
        for name in robustness:
            write_experiment(lambda f: rr.result(f, name, "test"), None, rp, rng)
        for q in {experiments[name]["proposer"] for name in robustness}:
            for ref in references:
                write_experiment(lambda f: rr.reference(f, "take", q, "test", ref), None, rp, rng)
    return takes


def write_frames(
    r: Layout, take: str, ego: str, exos: list[str], rng, rows: list, frames=FRAMES, annotation_split: str = "train"
) -> None:
    masks: dict = {}
    annotated: dict = {}
    for cam, hw in [(ego, EGO_HW)] + [(c, EXO_HW) for c in exos]:
        for f in frames:
            img = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
            path = Path(r.image(take, cam, f))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
    for oi, obj in enumerate(OBJECTS):
        masks[obj], annotated[obj] = {}, {}
        for cam, hw in [(ego, EGO_HW)] + [(c, EXO_HW) for c in exos]:
            annotated[obj][cam] = list(frames)
            masks[obj][cam] = {}
            for f in frames:
                if cam == ego and oi == 1 and f == frames[-1] and len(frames) > 1:
                    continue
                if cam == ego and oi == 1 and len(frames) == 1 and take.endswith("B"):
                    continue
                masks[obj][cam][str(f)] = encode_rle(box_mask(hw, 4 + 6 * oi, 5 + 8 * oi, 12, 14))
    write_json(
        r.annotation(take),
        {
            "take_uid": take,
            "take_name": f"name_{take}",
            "scenario": "Cooking" if take.endswith("1") else "Health",
            "parent_scenario": "Cooking",
            "ego_cam": ego,
            "exo_cams": exos,
            "native_size": {ego: list(EGO_HW), **{c: list(EXO_HW) for c in exos}},
            "image_size": {ego: list(EGO_HW), **{c: list(EXO_HW) for c in exos}},
            "subsample_idx": list(frames),
            "masks": masks,
            "annotated_frames": annotated,
            "skipped": [{"object": "lid_2", "camera": exos[0], "frame": 0, "reason": "undecodable mask"}],
        },
    )
    for obj in OBJECTS:
        for exo in exos:
            for f in frames:
                present = str(f) in masks[obj][ego]
                rows.append(
                    {
                        "take_uid": take,
                        "take_name": f"name_{take}",
                        "scenario": "Cooking" if take.endswith("1") else "Health",
                        "parent_scenario": "Cooking",
                        "annotation_split": annotation_split,
                        "object": obj,
                        "label": obj.rsplit("_", 1)[0],
                        "ego_cam": ego,
                        "exo_cam": exo,
                        "frame": f,
                        "direction": "exo2ego",
                        "ego_present": present,
                        "exo_present": True,
                        "exo_area": 168,
                        "ego_area": 168 if present else 0,
                    }
                )


def write_experiment(path, subset: str | None, pairs: pd.DataFrame, rng, similarity: bool = False) -> None:
    """Samples, predictions and metrics of a predictor on ``subset`` (None: every pair, as test);
    ``path(name)``: where file ``name`` goes (``Layout.result`` or ``Layout.reference``); ``similarity``:
    the samples of an existence-head experiment (with the published confidence beside the head's)."""
    s = pairs if subset is None else pairs[np.arange(len(pairs)) % 3 == 2]
    s = s.assign(split=subset or "test")
    n = len(s)
    iou = np.where(s.ego_present, rng.uniform(0, 1, n), np.nan)
    samples = s[
        ["take_uid", "object", "exo_cam", "ego_cam", "frame", "split", "ego_present", "scenario", "label", "ego_area"]
    ].assign(
        iou=iou,
        shape=iou,
        location=rng.uniform(0, 0.3, n),
        confidence=rng.uniform(0, 1, n),
        pred_exists=rng.uniform(0, 1, n) > 0.5,
        chosen=0,
        best_possible_iou=np.maximum(iou, 0.8),
        n_candidates=7,
    )
    if similarity:
        samples = samples.assign(similarity=rng.uniform(0.5, 0.75, n))
    write_parquet(path("samples.parquet"), samples)
    results: dict = {}
    for r in samples.itertuples():
        hw = EGO_HW
        eh, ew = eval_size(*hw)
        m = resize_mask(box_mask(hw, rng.integers(0, 30), rng.integers(0, 30), 14, 14), eh, ew)
        t = results.setdefault(r.take_uid, {"masks": {}, "subsample_idx": sorted(set(pairs.frame))})
        t["masks"].setdefault(r.object, {}).setdefault(f"{r.exo_cam}_{r.ego_cam}", {})[str(r.frame)] = {
            "pred_mask": encode_rle(m),
            "confidence": float(r.confidence),
        }
    write_json(path("predictions.json"), {"exo-ego": {"version": "xx", "challenge": "correspondence", "results": results}})
    write_json(path("metrics.json"), summarise(samples, bootstrap=Bootstrap(resamples=200, level=0.95, seed=0)))
