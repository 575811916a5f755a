"""Predictions in the official submission format of either direction (exo->ego: ``exo-ego``;
ego->exo: ``ego-exo``, see :mod:`omama.direction`), and the reference predictors.

Every proposal of the destination frame is a candidate; the best cosine wins and its sigmoid is the
confidence (``existence: similarity``; with ``existence: head`` the confidence is the calibrated
presence probability of the visibility MLP, see ``omama.model.existence``). A frame without proposals predicts an empty mask with confidence 0
(``n_candidates == 0`` in samples.parquet).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from tqdm import tqdm

from omama.data.masks import encode_rle, eval_size
from omama.direction import Direction
from omama.evaluation.metrics import Bootstrap, predict_only_record, score_submission, summarise, unscored_metrics
from omama.experiment import Experiment, Inputs
from omama.io import write_json, write_parquet
from omama.model.calibration import Calibration
from omama.model.choose import ModelChooser
from omama.model.negatives import centroids
from omama.model.setup import trained_head
from omama.model.takedata import Corpus, TakeData, subset_rows

log = logging.getLogger(__name__)

REFERENCES = ("random", "largest", "nearest-position")
SAMPLE_COLUMNS = [
    "take_uid",
    "object",
    "exo_cam",
    "ego_cam",
    "frame",
    "split",
    "ego_present",
    "iou",
    "shape",
    "location",
    "confidence",
    "pred_exists",
    "chosen",
    "best_possible_iou",
    "n_candidates",
    "scenario",
    "label",
    "ego_area",
]


class ReferenceChooser:
    """Baselines on the same candidates: random (seeded), largest, nearest-position.

    They always claim the object is present (confidence 1).
    """

    def __init__(self, predictor: str, seed: int, *, direction: str):
        if predictor not in REFERENCES:
            raise ValueError(f"unknown reference predictor {predictor!r}; known: {REFERENCES}")
        self.predictor = predictor
        self.rng = np.random.default_rng(seed)
        self.direction = Direction(direction)

    def __call__(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[np.ndarray, np.ndarray]:
        d = self.direction
        dst_cam = rows[d.dst_col].iloc[0]
        props = td.proposals(frame, dst_cam)
        masks = td.proposal_masks(frame, (props.height, props.width), dst_cam)
        n = len(masks)
        if self.predictor == "random":
            idx = self.rng.integers(0, n, size=len(rows))
        elif self.predictor == "largest":
            idx = np.full(len(rows), int(masks.reshape(n, -1).sum(1).argmax()))
        else:
            rel = centroids(masks) / np.array([props.width, props.height])
            idx = []
            for r, src_cam in zip(rows.itertuples(), rows[d.src_col]):
                src = td.source_mask(r.object, src_cam, frame)
                s = centroids(src[None])[0] / np.array([src.shape[1], src.shape[0]])
                d = np.nan_to_num(np.linalg.norm(rel - s, axis=1), nan=np.inf)
                idx.append(int(d.argmin()))
            idx = np.array(idx)
        return idx, np.ones(len(rows))


def run_predictions(rows: pd.DataFrame, corpus: Corpus, chooser, desc: str = "predict") -> tuple[dict, dict, pd.DataFrame]:
    """(submission, ground truth, samples) for ``rows`` of a split table, in the chooser's direction.

    The ground truth holds, per object, the source masks of the rows and the destination masks
    at those frames, and the annotated frames of both cameras: exactly what the official
    evaluator of the direction reads (the destination camera's key is kept even without masks,
    since the evaluator iterates over the keys it finds). Predict-only rows (``scored`` False: the
    annotations withhold the destination masks) are predicted but left out of the ground truth and
    the samples: only the challenge server can score them.
    """
    d = chooser.direction
    results, annotations, extra = {}, {}, []
    scored = rows["scored"] if "scored" in rows else pd.Series(True, index=rows.index)
    groups = rows.groupby(["take_uid", d.dst_col, "frame"], sort=False)
    for (take, dst_cam, frame), g in tqdm(groups, desc=desc, mininterval=5):
        td = corpus[take]
        frame = int(frame)
        size = eval_size(*td.native_size(dst_cam))
        props = td.proposals(frame, dst_cam)
        n = 0 if props is None else len(props)
        if n:
            idx, conf = chooser(td, g, frame)
        else:
            idx, conf = np.full(len(g), -1), np.zeros(len(g))
        cands = td.proposal_masks(frame, size, dst_cam)
        flat = cands.reshape(n, size[0] * size[1])
        areas = flat.sum(1)
        res = results.setdefault(take, {"masks": {}, "subsample_idx": td.annotation["subsample_idx"]})
        for r, src_cam, i, c, known in zip(g.itertuples(), g[d.src_col], idx, conf, scored[g.index]):
            pred = cands[i] if i >= 0 else np.zeros(size, bool)
            res["masks"].setdefault(r.object, {}).setdefault(d.mask_key(r.ego_cam, r.exo_cam), {})[str(frame)] = {
                "pred_mask": encode_rle(pred),
                "confidence": float(c),
            }
            if not known:
                continue
            ann = annotations.setdefault(
                take, {"masks": {}, "subsample_idx": td.annotation["subsample_idx"], "annotated_frames": {}}
            )
            gt_cams = ann["masks"].setdefault(r.object, {})
            gt_cams.setdefault(src_cam, {})[str(frame)] = td.rle(r.object, src_cam, frame)
            dst_rle = td.rle(r.object, dst_cam, frame)
            dst_masks = gt_cams.setdefault(
                dst_cam, {}
            )  # kept even when empty: the official evaluator skips an object without it
            best = np.nan
            if dst_rle is not None:
                dst_masks[str(frame)] = dst_rle
                gt = td.mask(r.object, dst_cam, frame, size)
                if n:  # intersections over the ground truth's pixels only: the same integers, far fewer
                    inside = gt.ravel()
                    inter = flat[:, inside].sum(1)
                    best = float((inter / (areas + inside.sum() - inter + 1e-7)).max())
                else:
                    best = 0.0
            af = td.annotation["annotated_frames"][r.object]
            ann["annotated_frames"].setdefault(r.object, {})[r.ego_cam] = af[r.ego_cam]
            ann["annotated_frames"][r.object][r.exo_cam] = af[r.exo_cam]
            extra.append(
                {
                    "take_uid": take,
                    "object": r.object,
                    "exo_cam": r.exo_cam,
                    "frame": frame,
                    "chosen": int(i),
                    "best_possible_iou": best,
                    "n_candidates": n,
                }
            )
    submission = {d.submission_key: {"version": "xx", "challenge": "correspondence", "results": results}}
    ground_truth = {"version": "xx", "challenge": "correspondence", "annotations": annotations}
    frames = score_submission(submission, ground_truth)
    rows = rows[scored]
    if len(frames) != len(rows):
        raise AssertionError(f"{len(frames)} scored frames for {len(rows)} scored split rows")
    keys = ["take_uid", "object", "exo_cam", "frame"]
    info = rows[
        keys + ["split", "scenario", "label", "ego_area", *(["exo_area"] if d.name == "ego2exo" else []), d.present]
    ].rename(columns={d.present: "split_present"})
    extra = pd.DataFrame(extra, columns=[*keys, "chosen", "best_possible_iou", "n_candidates"])
    samples = frames.merge(extra, on=keys).merge(info, on=keys)
    if (samples["split_present"] != samples[d.present]).any():
        raise AssertionError(f"{d.dst_view} presence in the split table disagrees with the ground truth")
    none = int((samples["n_candidates"] == 0).sum())
    if none:
        log.warning("%d samples had no proposals: empty mask, confidence 0", none)
    return submission, ground_truth, samples[sample_columns(d)]


def sample_columns(direction: Direction) -> list[str]:
    """samples.parquet's columns: ego2exo tables have ``exo_present`` (and ``exo_area``) in place of ``ego_present``."""
    if direction.name == "exo2ego":
        return SAMPLE_COLUMNS
    return [{"ego_present": "exo_present"}.get(c, c) for c in SAMPLE_COLUMNS] + ["exo_area"]


def evaluated_rows(split_table, subset: str, *, direction: str) -> pd.DataFrame:
    """The rows of ``subset`` in ``direction``; an empty subset is an error (the split stage normally catches it first)."""
    rows = subset_rows(split_table, subset, direction=direction)
    if rows.empty:
        raise ValueError(
            f"subset {subset!r} ({direction}) of {split_table} is empty: nothing to predict or score; change "
            f"split.ratios or select more takes, or remove {subset!r} from evaluate.subsets"
        )
    return rows


def predict_experiment(
    experiment: Experiment, inputs: Inputs, *, subset: str, predictions_out, ground_truth_out, samples_out, extra_sources=None
) -> dict:
    """Predict ``subset`` of ``inputs.split`` with the experiment's head (``matcher: cosine``: the training-free
    matcher, no weights); write the submission, ground truth and samples.

    With ``inputs.calibration`` (the existence head's calibration.json; ``inputs.model`` then holds the trained
    ``mlp_visible``) the confidence is the calibrated presence probability, and the samples gain a
    ``similarity`` column: the published confidence (sigmoid of the best cosine). ``extra_sources`` (``adapt: cycle``
    only): more sources for the cycles, see ``omama.model.adapt.adapt``."""
    direction, calibration = experiment.direction, inputs.calibration
    rows = evaluated_rows(inputs.split, subset, direction=direction)
    s, head = trained_head(experiment, inputs)
    existence = None if calibration is None else Calibration.load(calibration)
    chooser = base = ModelChooser(head, s, existence, direction=direction)
    if experiment.temporal == "memory":
        from omama.model.temporal import MemoryChooser, MemoryFit

        chooser = MemoryChooser(base, MemoryFit.load(inputs.temporal))
        if chooser.fit.offline:
            for take, g in rows.groupby("take_uid", sort=False):
                chooser.prime(s.corpus[take], g)
    if experiment.adapt == "cycle":  # on the unlabeled rows about to be predicted
        from omama.model.adapt import adapted_chooser

        chooser, _ = adapted_chooser(base, rows, s.corpus, experiment.adaptation, extra_sources)
    sub, gt, samples = run_predictions(rows, s.corpus, chooser, desc=f"predict {subset}")
    if existence is not None:  # frames without proposals: no cosine, confidence 0 either way
        keys = zip(samples.take_uid, samples.object, samples.exo_cam, samples.frame)
        samples["similarity"] = [chooser.similarity.get((t, o, c, int(f)), 0.0) for t, o, c, f in keys]
    write_json(predictions_out, sub)
    write_json(ground_truth_out, gt)
    write_parquet(samples_out, samples)
    metrics = summarise(samples)
    log.info(
        "%s: %d scored samples, IoU %.4f; %d predict-only (destination masks withheld)",
        subset,
        len(samples),
        metrics["iou"],
        len(rows) - len(samples),
    )
    return metrics


def predict_reference(
    *,
    split_table,
    subset: str,
    annotations,
    proposals,
    predictor: str,
    seed: int,
    samples_out,
    metrics_out,
    bootstrap: Bootstrap | None = None,
    direction: str,
    exo_proposals=None,
) -> dict:
    """A reference predictor on the same candidates; samples + metrics (official evaluator)."""
    rows = evaluated_rows(split_table, subset, direction=direction)
    corpus = Corpus(annotations, proposals, exo_proposals=exo_proposals)
    chooser = ReferenceChooser(predictor, seed, direction=direction)
    _, _, samples = run_predictions(rows, corpus, chooser, desc=f"{predictor} {subset}")
    unscored = rows[~rows["scored"]] if "scored" in rows else rows.iloc[:0]
    if samples.empty:
        metrics = unscored_metrics(unscored["take_uid"].nunique(), len(unscored))
    else:
        metrics = summarise(samples, bootstrap=bootstrap)
        if len(unscored):
            metrics["predict_only"] = predict_only_record(unscored["take_uid"].nunique(), len(unscored))
    write_parquet(samples_out, samples)
    write_json(metrics_out, metrics, indent=1)
    return metrics
