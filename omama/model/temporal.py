"""Temporal memory (``temporal: memory``): what the model predicted for the same object at the take's other
annotated frames, as extra evidence at this one.

O-MaMa matches every annotated frame on its own. Here, for a source object at frame t, each destination
candidate c gets, besides the head's cosine s_c, a memory score m_c: the confidence-weighted mean cosine of
c's pooled backbone descriptor [mask | context] (the head's input, no projection: destination-to-destination
similarity needs no learning) with the descriptors of the masks the model chose for that object before. The
fused score s_c + alpha * m_c picks the mask. Presence uses the history too: the published confidence
p = sigmoid(best cosine) becomes sigmoid(logit(p) + gamma * logit(h)), h the confidence-weighted mean of the
object's earlier confidences.

Why a fixed fusion fitted on validation rather than a learned memory attention: two numbers, fitted by grid
search on the validation takes (alpha by their IoU, gamma by their existence balanced accuracy, 0 in each
grid: a memory that does not help is switched off), cannot overfit the handful of takes a split holds, need no
second training run, and leave the matching head exactly as trained, so the paired comparison with the same
head without memory isolates the memory.

Honest by construction: memory holds only the model's own choices (proposals, their descriptors and the
model's confidences); ground truth is read only on validation, to fit alpha and gamma. Causal by default:
frames in the take's time order, memory from earlier frames only; ``offline`` uses every other annotated
frame of the take (a first pass without memory gives the choices it remembers).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from omama.data.masks import eval_size
from omama.evaluation.metrics import balanced_accuracy_score
from omama.io import read_json, write_json
from omama.model.choose import ModelChooser
from omama.model.descriptors import describe
from omama.model.takedata import Corpus, TakeData

log = logging.getLogger(__name__)

EPS = 1e-6


@dataclass(frozen=True)
class MemoryFit:
    """The fusion's weights: ``alpha`` (memory similarity in the candidate score), ``gamma`` (presence history
    in the existence log-odds), and whether memory may look ahead (``offline``)."""

    alpha: float
    gamma: float
    offline: bool

    @classmethod
    def load(cls, path) -> MemoryFit:
        d = read_json(path, "temporal memory fit")
        try:
            return cls(alpha=float(d["alpha"]), gamma=float(d["gamma"]), offline=bool(d["offline"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path} lacks the memory's alpha, gamma or offline: {e}") from None


@dataclass
class FrameEvidence:
    """One frame group's evidence: the head's cosines (B, N), the candidates' unit descriptors (N, 2C), the
    rows' objects and the frame."""

    scores: np.ndarray
    descriptors: np.ndarray
    objects: list[str]
    frame: int


def logit(p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class Memory:
    """The model's own earlier choices per object: descriptor and confidence, by frame."""

    def __init__(self):
        self.entries: dict[str, list[tuple[int, np.ndarray, float]]] = {}

    def add(self, obj: str, frame: int, descriptor: np.ndarray, confidence: float) -> None:
        self.entries.setdefault(obj, []).append((frame, descriptor, confidence))

    def recall(self, obj: str, frame: int, offline: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """(descriptors (K, 2C), weights (K,)) remembered for ``obj`` at ``frame``: earlier frames (every other
        frame when ``offline``); None when there is none."""
        found = [(d, w) for f, d, w in self.entries.get(obj, []) if (f != frame if offline else f < frame)]
        if not found:
            return None
        return np.stack([d for d, _ in found]), np.array([w for _, w in found])


def decide(ev: FrameEvidence, memory: Memory, fit: MemoryFit) -> tuple[np.ndarray, np.ndarray]:
    """(chosen candidate, confidence) per row of one frame group, with ``memory`` (nothing is added to it)."""
    idx, conf = [], []
    for b, obj in enumerate(ev.objects):
        s = ev.scores[b]
        recalled = memory.recall(obj, ev.frame, fit.offline)
        fused = s
        history = None
        if recalled is not None:
            descs, w = recalled
            weight = np.maximum(w, EPS)
            m = (ev.descriptors @ descs.T) @ weight / weight.sum()
            fused = s + fit.alpha * m
            history = float(w @ weight / weight.sum())
        i = int(np.argmax(fused))
        p = float(sigmoid(s[i]))  # the published confidence of the chosen candidate
        if history is not None and fit.gamma:
            p = float(sigmoid(logit(p) + fit.gamma * logit(history)))
        idx.append(i)
        conf.append(p)
    return np.array(idx), np.array(conf)


def remember(ev: FrameEvidence, memory: Memory, idx: np.ndarray, conf: np.ndarray) -> None:
    for b, obj in enumerate(ev.objects):
        memory.add(obj, ev.frame, ev.descriptors[idx[b]], float(conf[b]))


class MemoryChooser:
    """A ``ModelChooser`` with temporal memory (see the module docstring): called frame group by frame group in
    the take's time order (``run_predictions`` does), it remembers its choices per (take, object)."""

    def __init__(self, base: ModelChooser, fit: MemoryFit):
        if base.direction.name != "exo2ego" or base.existence is not None:
            raise ValueError(
                "temporal memory works on exo2ego experiments with the published confidence (existence: similarity)"
            )
        self.base, self.fit, self.direction = base, fit, base.direction
        self.memories: dict[str, Memory] = {}
        self.primed: set[str] = set()

    def evidence(self, td: TakeData, rows: pd.DataFrame, frame: int) -> FrameEvidence:
        scores, _, _ = self.base.match(td, rows, frame)
        _, dst_feat, _, cand = self.base.frame_inputs(td, rows, frame)
        with torch.no_grad():
            d = F.normalize(describe(dst_feat.float(), cand)[0], dim=-1)
        return FrameEvidence(scores.cpu().numpy(), d.cpu().numpy(), list(rows["object"]), int(frame))

    def prime(self, td: TakeData, rows: pd.DataFrame) -> None:
        """Offline: a first pass over every frame of the take without memory, whose choices are remembered."""
        memory = self.memories.setdefault(td.take, Memory())
        for frame, g in rows.groupby("frame", sort=True):
            ev = self.evidence(td, g, int(frame))
            idx, conf = decide(ev, Memory(), self.fit)
            remember(ev, memory, idx, conf)
        self.primed.add(td.take)

    def __call__(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[np.ndarray, np.ndarray]:
        if self.fit.offline and td.take not in self.primed:
            raise ValueError(f"offline memory: take {td.take!r} was not primed (MemoryChooser.prime) before prediction")
        memory = self.memories.setdefault(td.take, Memory())
        ev = self.evidence(td, rows, frame)
        idx, conf = decide(ev, memory, self.fit)
        if not self.fit.offline:
            remember(ev, memory, idx, conf)
        return idx, conf


def take_groups(rows: pd.DataFrame):
    """(take, rows of that take) in the take's time order (rows sorted by take, frame, object, camera)."""
    return rows.groupby("take_uid", sort=False)


def validation_evidence(
    chooser: MemoryChooser, rows: pd.DataFrame, corpus: Corpus
) -> list[tuple[FrameEvidence, np.ndarray, np.ndarray]]:
    """Per validation frame group, in time order: the evidence, each row's IoU with the ground truth of every
    candidate at the evaluation size (rows (B, N); NaN rows where the object is absent), and its presence."""
    out = []
    for take, g in take_groups(rows):
        td = corpus[take]
        for frame, fg in g.groupby("frame", sort=True):
            frame = int(frame)
            ev = chooser.evidence(td, fg, frame)
            size = eval_size(*td.native_size(fg["ego_cam"].iloc[0]))
            flat = td.proposal_masks(frame, size, fg["ego_cam"].iloc[0]).reshape(len(ev.descriptors), -1)
            areas = flat.sum(1)
            ious, present = [], []
            for r in fg.itertuples():
                gt = td.mask(r.object, r.ego_cam, frame, size)
                present.append(gt is not None)
                if gt is None:
                    ious.append(np.full(len(areas), np.nan))
                    continue
                inside = gt.ravel()
                inter = flat[:, inside].sum(1)
                ious.append(inter / (areas + inside.sum() - inter + 1e-7))
            out.append((ev, np.array(ious), np.array(present)))
    return out


def simulate(evidence: list[list], fit: MemoryFit) -> tuple[float, float]:
    """(mean IoU over present rows, existence balanced accuracy over all rows) of predicting the validation
    ``evidence`` (per take, its frame groups in time order) with ``fit``, memory built from its own choices."""
    ious, present, pred = [], [], []
    for take in evidence:
        memory = Memory()  # memory never crosses takes
        if fit.offline:
            for ev, _, _ in take:
                remember(ev, memory, *decide(ev, Memory(), fit))
        for ev, cand_iou, pres in take:
            idx, conf = decide(ev, memory, fit)
            if not fit.offline:
                remember(ev, memory, idx, conf)
            ious += [cand_iou[b, i] for b, i in enumerate(idx) if pres[b]]
            present += list(pres)
            pred += list(conf > 0.5)
    return float(np.mean(ious)) if ious else math.nan, balanced_accuracy_score(np.array(present), np.array(pred))


def fit_memory(chooser: MemoryChooser, rows: pd.DataFrame, corpus: Corpus, *, alphas, gammas, offline: bool) -> dict:
    """alpha (best validation IoU) then gamma (best validation balanced accuracy), each by grid search with 0
    in the grid (ties go to the smaller); a record of every value tried."""
    if rows.empty:
        raise ValueError("temporal memory is fitted on the validation rows of the experiment's split, and there are none")
    evidence = [validation_evidence(chooser, g, corpus) for _, g in take_groups(rows)]
    tried_alpha = {a: simulate(evidence, MemoryFit(a, 0.0, offline))[0] for a in sorted({0.0, *map(float, alphas)})}
    alpha = max(sorted(tried_alpha), key=lambda a: (np.nan_to_num(tried_alpha[a], nan=-1), -a))
    tried_gamma = {g: simulate(evidence, MemoryFit(alpha, g, offline))[1] for g in sorted({0.0, *map(float, gammas)})}
    gamma = max(sorted(tried_gamma), key=lambda g: (np.nan_to_num(tried_gamma[g], nan=-1), -g))
    fit = MemoryFit(alpha, gamma, offline)
    log.info("temporal memory fitted on %d validation rows: alpha %g (IoU %s), gamma %g", len(rows), alpha, tried_alpha, gamma)
    return {
        **asdict(fit),
        "validation": {
            "rows": len(rows),
            "takes": int(rows["take_uid"].nunique()),
            "iou_by_alpha": {str(k): v for k, v in tried_alpha.items()},
            "balanced_accuracy_by_gamma": {str(k): v for k, v in tried_gamma.items()},
        },
    }


def write_memory_fit(experiment, inputs, *, out) -> dict:
    """Fit an experiment's temporal memory on the validation rows of its split (``inputs``: its own dataset's
    files and its head) and write the fit (alpha, gamma, offline, what validation gave each value)."""
    from omama.model.setup import trained_head
    from omama.model.takedata import subset_rows

    s, head = trained_head(experiment, inputs)
    chooser = MemoryChooser(ModelChooser(head, s, direction=experiment.direction), MemoryFit(0.0, 0.0, False))
    settings = experiment.temporal_memory
    record = fit_memory(
        chooser,
        subset_rows(inputs.split, "val", direction=experiment.direction),
        s.corpus,
        alphas=settings["alphas"],
        gammas=settings["gammas"],
        offline=settings["offline"],
    )
    write_json(out, record, indent=1)
    return record
