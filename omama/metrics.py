"""The official Ego-Exo4D correspondence metrics (Exo->Ego), as the challenge evaluator computes them."""

from __future__ import annotations

import logging
import math
import warnings

import cv2
import numpy as np
import pandas as pd
from skimage.morphology import disk
from sklearn.metrics import balanced_accuracy_score

from omama.io import read_json, write_json
from omama.masks import decode_rle, eval_size, resize_mask, where

log = logging.getLogger(__name__)

PROTOCOL = "official challenge evaluator"
DIAGONAL = math.sqrt(480**2 + 480**2)
BOUNDARY_TOLERANCE = 0.008


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P & G| / (|P | G| + 1e-7); 1 when the union is empty."""
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / (union + 1e-7))


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
    kernel = disk(radius).astype(np.uint8)
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
    """One row per scored frame (official rule: exo mask exists and the frame is ego-annotated).

    Like the official evaluator, an object whose ground-truth masks lack an ego camera key
    is skipped (its frames would count as absent); skipped objects are logged and listed in
    the result's ``attrs["skipped_objects"]``. Ground truth written by this pipeline always
    has the key, with no masks when the object never appears in ego.
    """
    if "exo-ego" not in predictions or "results" not in predictions["exo-ego"]:
        raise ValueError("predictions lack the 'exo-ego' -> 'results' entry of the submission format")
    results = predictions["exo-ego"]["results"]
    rows, skipped = [], []
    for take, ann in ground_truth["annotations"].items():
        if take not in results:
            raise KeyError(f"submission lacks {where(take=take)}")
        for obj, cams in ann["masks"].items():
            ego = ego_camera(cams, take=take, obj=obj)
            if ego is None:
                skipped.append(where(take=take, obj=obj))
                continue
            try:
                annotated = {int(f) for f in ann["annotated_frames"][obj][ego]}
            except KeyError:
                raise KeyError(f"ground truth lacks annotated_frames of the ego camera for {where(take=take, obj=obj, cam=ego)}") from None
            ego_masks = cams[ego]
            for exo, frames in cams.items():
                if exo == ego:
                    continue
                for frame in frames:
                    if int(frame) not in annotated:
                        continue
                    ctx = dict(take=take, obj=obj, cam=exo, frame=frame)
                    try:
                        pred = results[take]["masks"][obj][f"{exo}_{ego}"][str(frame)]
                    except KeyError:
                        raise KeyError(f"submission lacks a prediction for {where(**ctx)}") from None
                    confidence = float(pred["confidence"])
                    row = dict(take_uid=take, object=obj, exo_cam=exo, ego_cam=ego, frame=int(frame),
                               ego_present=frame in ego_masks, confidence=confidence, pred_exists=confidence > 0.5,
                               iou=np.nan, shape=np.nan, location=np.nan)
                    if row["ego_present"]:
                        gt = eval_mask(ego_masks[frame])
                        pm = decode_rle(pred["pred_mask"])
                        if pm.shape != gt.shape:
                            raise ValueError(f"predicted mask is {pm.shape}, the evaluation size is {gt.shape}, for {where(**ctx)}")
                        row["iou"], row["shape"], row["location"] = score_masks(pm, gt)
                    rows.append(row)
    if skipped:
        log.warning("%d object(s) skipped, no ego camera key in their ground-truth masks (as the official "
                    "evaluator does): %s", len(skipped), "; ".join(skipped))
    columns = ["take_uid", "object", "exo_cam", "ego_cam", "frame", "ego_present", "confidence", "pred_exists", "iou", "shape", "location"]
    frames = pd.DataFrame(rows, columns=columns)
    frames.attrs["skipped_objects"] = skipped
    return frames


def summarise(frames: pd.DataFrame) -> dict:
    """Micro-averaged metrics over scored frames (IoU, shape, location over present frames)."""
    present = frames[frames["ego_present"].astype(bool)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bal = (
            float(balanced_accuracy_score(frames["ego_present"].astype(bool), frames["pred_exists"].astype(bool)))
            if len(frames) else float("nan")
        )
    mean = lambda c: float(present[c].mean()) if len(present) else float("nan")
    return {
        "iou": mean("iou"),
        "iou_std": float(present["iou"].std(ddof=0)) if len(present) else float("nan"),
        "shape_acc": mean("shape"),
        "location_score": mean("location"),
        "existence_balanced_acc": bal,
        "n_present": int(len(present)),
        "n_total": int(len(frames)),
        "protocol": PROTOCOL,
    }


def evaluate(predictions_path, ground_truth_path) -> dict:
    """Score an official submission file against an official ground-truth file."""
    predictions = read_json(predictions_path, "predictions (submission) file")
    ground_truth = read_json(ground_truth_path, "ground-truth file")
    return summarise(score_submission(predictions, ground_truth))


def write_metrics(predictions_path, ground_truth_path, metrics_out) -> dict:
    """``evaluate`` and write metrics.json."""
    metrics = evaluate(predictions_path, ground_truth_path)
    write_json(metrics_out, metrics, indent=1)
    return metrics
