"""The official Ego-Exo4D correspondence metrics (Exo->Ego and Ego->Exo), as the challenge evaluators compute them,
with percentile-bootstrap confidence intervals over takes.

Bootstrap: the independent unit is the take (frames, objects and cameras of one take are
correlated; in a photos dataset every photo pair is a take). Each resample draws as many
takes as there are, with replacement, from a generator seeded with ``Bootstrap.seed``, and
recomputes every metric exactly as the point estimate does, over all scored frames of the drawn
takes (a take drawn twice counts twice): the micro-averages over present frames, and the balanced
accuracy over all frames. The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles (numpy's linear rule) of the defined resamples. Undefined resamples are skipped and
counted in ``bootstrap.undefined``: a mean with no present frame drawn, or a balanced accuracy
whose drawn frames hold only one true class (present or absent; scikit-learn would then return
the recall of that one class, which is not a balanced accuracy). When every resample is
undefined the interval is ``null``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from omama.data.masks import decode_rle, eval_size, resize_mask
from omama.io import read_json, where, write_json

log = logging.getLogger(__name__)

PROTOCOL = "official challenge evaluator"
CI_COLUMNS = {"iou": "iou", "shape_acc": "shape", "location_score": "location"}  # metric -> samples column
DIAGONAL = math.sqrt(480**2 + 480**2)
BOUNDARY_TOLERANCE = 0.008


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P & G| / (|P | G| + 1e-7); 1 when the union is empty."""
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / (union + 1e-7))


def disk(radius: int) -> np.ndarray:
    """scikit-image's ``morphology.disk(radius)`` (its default, strict radius): the grid points within
    ``radius`` of the centre, as uint8 (written out: importing scikit-image costs every job a second)."""
    r = np.arange(-radius, radius + 1)
    return ((r[None, :] ** 2 + r[:, None] ** 2) <= radius**2).astype(np.uint8)


def balanced_accuracy_score(y_true, y_pred) -> float:
    """scikit-learn's ``balanced_accuracy_score`` (not adjusted), which the official evaluators call:
    the mean recall over the classes present in ``y_true`` (written out: importing scikit-learn costs
    every job two seconds; tests compare the two)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    if not len(classes):
        return float("nan")
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel outline: pixels differing from their east, south or south-east neighbour (DAVIS)."""
    m = mask.astype(bool)
    e = np.zeros_like(m)
    s = np.zeros_like(m)
    se = np.zeros_like(m)
    e[:, :-1] = m[:, 1:]
    s[:-1, :] = m[1:, :]
    se[:-1, :-1] = m[1:, 1:]
    b = (m ^ e) | (m ^ s) | (m ^ se)
    b[-1, :] = m[-1, :] ^ e[-1, :]
    b[:, -1] = m[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_f(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS boundary F-measure with a tolerance of ceil(0.008 * image diagonal) pixels."""
    radius = int(math.ceil(BOUNDARY_TOLERANCE * math.hypot(*gt.shape)))
    kernel = disk(radius)
    bp, bg = boundary_map(pred), boundary_map(gt)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 and n_g == 0:
        precision, recall = 1.0, 1.0
    elif n_p == 0:
        precision, recall = 1.0, 0.0
    elif n_g == 0:
        precision, recall = 0.0, 1.0
    else:
        gt_dil = cv2.dilate(bg.astype(np.uint8), kernel).astype(bool)
        pred_dil = cv2.dilate(bp.astype(np.uint8), kernel).astype(bool)
        precision = float((bp & gt_dil).sum() / n_p)
        recall = float((bg & pred_dil).sum() / n_g)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def box_midpoint(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) = floor of the bounding-box midpoint; an empty mask gives (H//2, W//2) (official quirk)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask.shape[0] // 2, mask.shape[1] // 2
    return (int(xs.min()) + int(xs.max())) // 2, (int(ys.min()) + int(ys.max())) // 2


def location_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Distance between box midpoints / sqrt(480^2 + 480^2) (lower is better)."""
    (px, py), (gx, gy) = box_midpoint(pred), box_midpoint(gt)
    return math.hypot(px - gx, py - gy) / DIAGONAL


def score_masks(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """(IoU, shape accuracy, location error) of one present frame at the evaluation size."""
    return iou(pred, gt), boundary_f(pred, gt), location_error(pred, gt)


def eval_mask(rle: dict) -> np.ndarray:
    """A native-size ground-truth RLE decoded and resized (nearest) to the evaluation size."""
    m = decode_rle(rle)
    return resize_mask(m, *eval_size(*m.shape))


def ego_camera(cams, **context) -> str | None:
    """The object's ego (aria) camera among its ground-truth mask keys; None when it has none."""
    ego = sorted(c for c in cams if "aria" in c)
    if len(ego) > 1:
        raise ValueError(f"expected one ego (aria) camera, found {ego} for {where(**context)}")
    return ego[0] if ego else None


def score_submission(predictions: dict, ground_truth: dict) -> pd.DataFrame:
    """One row per scored frame of either direction's submission (see ``score_direction``)."""
    return score_direction(predictions, ground_truth, "ego2exo" if "ego-exo" in predictions else "exo2ego")


def score_direction(predictions: dict, ground_truth: dict, direction: str) -> pd.DataFrame:
    """One row per scored frame, as the official evaluator of ``direction`` scores them
    (``evaluate_exoego.py``, ``evaluate_egoexo.py``).

    For each object with an ego (aria) camera key, each other (exo) camera key and each frame
    with a source mask (exo->ego: the exo camera's; ego->exo: the ego camera's), the frame is
    scored when it is among the destination camera's annotated frames, and the object is present
    in the destination (column ``ego_present`` / ``exo_present``) when that camera has a mask there.
    A present frame's GT is its mask at the evaluation size (longer side 480, nearest), and the
    prediction must have that size in both directions (see :mod:`omama.direction`). A prediction
    exists when its confidence is above 0.5.

    Like the official evaluators, an object whose ground-truth masks lack an ego camera key is
    skipped (its frames would count as absent); skipped objects are logged and listed in the
    result's ``attrs["skipped_objects"]``. Ground truth written by this pipeline always has the
    key, with no masks when the object never appears in ego.
    """
    from omama.direction import Direction

    d = Direction(direction)
    if d.submission_key not in predictions or "results" not in predictions[d.submission_key]:
        raise ValueError(f"predictions lack the {d.submission_key!r} -> 'results' entry of the submission format")
    results = predictions[d.submission_key]["results"]
    rows, skipped = [], []
    for take, ann in ground_truth["annotations"].items():
        if take not in results:
            raise KeyError(f"submission lacks {where(take=take)}")
        for obj, cams in ann["masks"].items():
            ego = ego_camera(cams, take=take, obj=obj)
            if ego is None:
                skipped.append(where(take=take, obj=obj))
                continue
            for exo in cams:
                if exo == ego:
                    continue
                src, dst = (exo, ego) if direction == "exo2ego" else (ego, exo)
                try:
                    annotated = {int(f) for f in ann["annotated_frames"][obj][dst]}
                except KeyError:
                    raise KeyError(f"ground truth lacks annotated_frames of {where(take=take, obj=obj, cam=dst)}") from None
                for frame in cams[src]:
                    if int(frame) not in annotated:
                        continue
                    ctx = dict(take=take, obj=obj, cam=exo, frame=frame)
                    try:
                        pred = results[take]["masks"][obj][d.mask_key(ego, exo)][str(frame)]
                    except KeyError:
                        raise KeyError(f"submission lacks a prediction for {where(**ctx)}") from None
                    confidence = float(pred["confidence"])
                    row = dict(
                        take_uid=take,
                        object=obj,
                        exo_cam=exo,
                        ego_cam=ego,
                        frame=int(frame),
                        **{d.present: frame in cams[dst]},
                        confidence=confidence,
                        pred_exists=confidence > 0.5,
                        iou=np.nan,
                        shape=np.nan,
                        location=np.nan,
                    )
                    if row[d.present]:
                        gt = eval_mask(cams[dst][frame])
                        pm = decode_rle(pred["pred_mask"])
                        if pm.shape != gt.shape:
                            raise ValueError(
                                f"predicted mask is {pm.shape}, the evaluation size is {gt.shape} (unpadded), "
                                f"for {where(**ctx)}"
                            )
                        row["iou"], row["shape"], row["location"] = score_masks(pm, gt)
                    rows.append(row)
    if skipped:
        log.warning(
            "%d object(s) skipped, no ego camera key in their ground-truth masks (as the official evaluator does): %s",
            len(skipped),
            "; ".join(skipped),
        )
    columns = ["take_uid", "object", "exo_cam", "ego_cam", "frame", d.present, "confidence", "pred_exists"]
    frames = pd.DataFrame(rows, columns=columns + ["iou", "shape", "location"])
    frames.attrs["skipped_objects"] = skipped
    return frames


def present(frames: pd.DataFrame) -> pd.Series:
    """Whether the destination view has the object, per scored frame (``exo_present`` in ego->exo tables)."""
    return frames["exo_present" if "exo_present" in frames.columns else "ego_present"].astype(bool)


def ci_key(level: float) -> str:
    """The metrics.json key of the intervals at ``level``: ``ci95`` for 0.95."""
    return f"ci{level * 100:g}"


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bootstrap over takes: ``resamples`` draws, two-sided ``level``, seeded (settings:
    config ``evaluate.bootstrap`` and ``evaluate.seed``)."""

    resamples: int
    level: float
    seed: int

    @property
    def key(self) -> str:
        return ci_key(self.level)

    @property
    def percent(self) -> str:
        return f"{self.level * 100:g} %"

    def counts(self, n_units: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """(resamples, n_units) int: how often each unit is drawn in each resample."""
        rng = np.random.default_rng(self.seed) if rng is None else rng
        idx = rng.integers(0, max(n_units, 1), size=(self.resamples, n_units))
        flat = idx + n_units * np.arange(self.resamples)[:, None]
        return np.bincount(flat.ravel(), minlength=self.resamples * n_units).reshape(self.resamples, n_units)

    def interval(self, values: np.ndarray) -> tuple[list[float] | None, int]:
        """([lo, hi] of the defined (finite) resample values or None, number undefined)."""
        ok = values[np.isfinite(values)]
        if not len(ok):
            return None, len(values)
        q = (1 - self.level) / 2
        lo, hi = np.quantile(ok, [q, 1 - q])
        return [float(lo), float(hi)], int(len(values) - len(ok))


def ratio(counts: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Per resample sum(counts * num) / sum(counts * den); NaN where the denominator is 0."""
    n, d = counts @ num, counts @ den
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def resample_metrics(frames: pd.DataFrame, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric per resample; ``counts`` (resamples, takes) indexes the sorted take uids of ``frames``."""
    takes = pd.Index(sorted(frames["take_uid"].unique()))
    if counts.shape[1] != len(takes):
        raise ValueError(f"{counts.shape[1]} draw columns for {len(takes)} takes")
    present_ = present(frames).to_numpy()
    predicted = frames["pred_exists"].to_numpy(bool)
    codes = takes.get_indexer(frames["take_uid"])

    def per_take(mask, w=None):
        return np.bincount(codes[mask], weights=None if w is None else w[mask], minlength=len(takes)).astype(float)

    n_present = per_take(present_)
    out = {key: ratio(counts, per_take(present_, frames[col].to_numpy(float)), n_present) for key, col in CI_COLUMNS.items()}
    tp, fn = (counts @ per_take(present_ & c) for c in (predicted, ~predicted))
    tn, fp = (counts @ per_take(~present_ & c) for c in (~predicted, predicted))
    with np.errstate(divide="ignore", invalid="ignore"):
        # scikit-learn's balanced accuracy: the mean of the per-class recalls, classes in order (absent, present)
        bal = (tn / (tn + fp) + tp / (tp + fn)) / 2
    out["existence_balanced_acc"] = np.where((tp + fn > 0) & (tn + fp > 0), bal, np.nan)
    return out


def confidence_intervals(frames: pd.DataFrame, bootstrap: Bootstrap) -> dict:
    """``{bootstrap.key: {metric: [lo, hi] | None}, "bootstrap": {...}}`` for the scored frames."""
    n_takes = int(frames["take_uid"].nunique())
    values = resample_metrics(frames, bootstrap.counts(n_takes))
    ci, undefined = {}, {}
    for key, v in values.items():
        ci[key], undefined[key] = bootstrap.interval(v)
    return {
        bootstrap.key: ci,
        "bootstrap": {
            "unit": "take",
            "units": n_takes,
            "resamples": bootstrap.resamples,
            "level": bootstrap.level,
            "seed": bootstrap.seed,
            "undefined": undefined,
        },
    }


def summarise(frames: pd.DataFrame, *, bootstrap: Bootstrap | None = None) -> dict:
    """Micro-averaged metrics over scored frames (IoU, shape, location over present frames); with
    ``bootstrap``, their confidence intervals over takes (see the module docstring)."""
    is_present = present(frames)
    present_frames = frames[is_present]
    bal = balanced_accuracy_score(is_present, frames["pred_exists"].astype(bool))
    mean = lambda c: float(present_frames[c].mean()) if len(present_frames) else float("nan")
    return {
        "iou": mean("iou"),
        "iou_std": float(present_frames["iou"].std(ddof=0)) if len(present_frames) else float("nan"),
        "shape_acc": mean("shape"),
        "location_score": mean("location"),
        "existence_balanced_acc": bal,
        "n_present": int(len(present_frames)),
        "n_total": int(len(frames)),
        "protocol": PROTOCOL,
        **(confidence_intervals(frames, bootstrap) if bootstrap is not None else {}),
    }


SERVER_SCORED = "the annotations withhold the destination masks of these takes: scored by the challenge server"


def predict_only(predictions: dict, ground_truth: dict) -> dict | None:
    """The predictions of takes the ground truth does not hold (their destination masks are withheld):
    ``{"takes": n, "predictions": n, "note": ...}``, or None when every predicted take is scored."""
    (block,) = predictions.values()
    takes = sorted(set(block["results"]) - set(ground_truth["annotations"]))
    if not takes:
        return None
    n = sum(len(f) for t in takes for per_pair in block["results"][t]["masks"].values() for f in per_pair.values())
    return predict_only_record(len(takes), n)


def predict_only_record(takes: int, predictions: int) -> dict:
    return {"takes": takes, "predictions": predictions, "note": SERVER_SCORED}


def unscored_metrics(takes: int, predictions: int) -> dict:
    """metrics.json of a subset none of whose predictions can be scored here: no metric, only the counts."""
    return {"scored": False, "protocol": PROTOCOL, "predict_only": predict_only_record(takes, predictions)}


def evaluate(predictions_path, ground_truth_path, *, bootstrap: Bootstrap | None = None) -> dict:
    """Score an official submission file against an official ground-truth file. Predictions of takes
    without ground truth (predict-only: destination masks withheld) are counted under ``predict_only``;
    when no take is scored, no metric is computed and ``scored`` is false."""
    predictions = read_json(predictions_path, "predictions (submission) file")
    ground_truth = read_json(ground_truth_path, "ground-truth file")
    unscored = predict_only(predictions, ground_truth)
    if not ground_truth["annotations"]:
        if unscored is None:
            raise ValueError(f"{ground_truth_path} holds no take and {predictions_path} no prediction: nothing to score")
        return unscored_metrics(unscored["takes"], unscored["predictions"])
    metrics = summarise(score_submission(predictions, ground_truth), bootstrap=bootstrap)
    return metrics if unscored is None else {**metrics, "predict_only": unscored}


def write_metrics(predictions_path, ground_truth_path, metrics_out, *, bootstrap: Bootstrap | None = None) -> dict:
    """``evaluate`` and write metrics.json."""
    metrics = evaluate(predictions_path, ground_truth_path, bootstrap=bootstrap)
    write_json(metrics_out, metrics, indent=1)
    return metrics


def balanced_accuracy_difference(a: pd.DataFrame, b: pd.DataFrame, bootstrap: Bootstrap) -> tuple[float, list[float] | None]:
    """(balanced accuracy of b - that of a, its paired bootstrap interval over takes) on scored frames both
    tables hold (the same takes drawn for both; NaN / None when a resample lacks a class)."""
    keys = ["take_uid", "object", "exo_cam", "frame"]
    j = a.merge(b, on=keys, suffixes=("_a", "_b"))
    if j.empty:
        return math.nan, None
    cols = [c for c in j.columns if c.endswith("_present_a")]
    truth = j[cols[0]].rename("present") if cols else j["ego_present_a"].rename("present")

    def frames(suffix):
        return pd.DataFrame(
            {
                "take_uid": j["take_uid"],
                "ego_present": truth.astype(bool),
                "pred_exists": j[f"pred_exists{suffix}"].astype(bool),
                **{c: j[f"{c}{suffix}"] for c in CI_COLUMNS.values()},
            }
        )

    fa, fb = frames("_a"), frames("_b")
    counts = bootstrap.counts(int(j["take_uid"].nunique()))
    diff = resample_metrics(fb, counts)["existence_balanced_acc"] - resample_metrics(fa, counts)["existence_balanced_acc"]
    point = summarise(fb)["existence_balanced_acc"] - summarise(fa)["existence_balanced_acc"]
    return float(point), bootstrap.interval(diff)[0]


def mean_resamples(values, units, bootstrap: Bootstrap, rng: np.random.Generator | None = None) -> np.ndarray:
    """The mean of ``values`` in each bootstrap resample of their ``units`` (takes), duplicates counted."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(units)), sort=True)
    n = len(uniques)
    values = np.asarray(values, float)
    sums = np.bincount(codes, weights=values, minlength=n)
    return ratio(bootstrap.counts(n, rng), sums, np.bincount(codes, minlength=n).astype(float))


def mean_interval(values, units, bootstrap: Bootstrap) -> list[float] | None:
    """Bootstrap interval over ``units`` of the mean of ``values`` (None when there are none)."""
    return bootstrap.interval(mean_resamples(values, units, bootstrap))[0]


def difference_interval(a, units_a, b, units_b, bootstrap: Bootstrap) -> list[float] | None:
    """Unpaired bootstrap interval of mean(b) - mean(a): the takes of each are resampled independently."""
    rng = np.random.default_rng(bootstrap.seed)
    ra = mean_resamples(a, units_a, bootstrap, rng)
    return bootstrap.interval(mean_resamples(b, units_b, bootstrap, rng) - ra)[0]
