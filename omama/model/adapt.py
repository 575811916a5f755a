"""Label-free adaptation (``adapt: cycle``): the head fine-tuned on the unlabeled pairs of the set it is
about to predict, by cycle consistency, and a presence signal from the same cycle.

For one frame of the set and one source camera, the B source masks (the objects given there) and the N
destination candidates: the forward match P(c | i) = softmax_c(q_i . t_c / T), the backward match of each
candidate into the sources P(i | c) = softmax_i(t_c . q_i / T), and the cycle probability
C_i = sum_c P(c | i) P(i | c): the chance that source i's match, matched back, lands on i. The loss
-mean log C_i over every (frame, camera) with at least two sources is minimised for ``steps`` Adam steps from
the trained weights (T the training temperature, 0.07). Nothing but the inputs of prediction is read: the
source masks, the proposals and the features; ground truth never.

Presence: an object absent from the destination has its best candidate on another object, whose backward
match goes to that object, not back: C_i is low. The adapted head's C_i is the confidence (present when
> 0.5, the evaluator's rule) where a frame has two sources or more; a lone source keeps the published
confidence (sigmoid of its best cosine): its cycle has nowhere else to go.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pandas as pd
import torch

from omama.model.choose import ModelChooser
from omama.model.head import TEMPERATURE, candidate_embeddings
from omama.model.takedata import Corpus, TakeData

log = logging.getLogger(__name__)


def cycle_groups(rows: pd.DataFrame, direction) -> list[tuple[str, int, pd.DataFrame]]:
    """(take, frame, rows) per frame and source camera: the rows that share one source grid."""
    keys = ["take_uid", "frame", direction.src_col, direction.dst_col]
    return [(take, int(frame), g) for (take, frame, _, _), g in rows.groupby(keys, sort=False)]


def cycle_probability(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """C_i (B,) of sources ``q`` (B, D) and candidates ``t`` (N, D), both unit vectors (see the module docstring)."""
    logits = q @ t.T / TEMPERATURE
    forward = logits.softmax(dim=1)  # P(c | i)
    backward = logits.softmax(dim=0)  # P(i | c), over the sources
    return (forward * backward).sum(1)


class CycleChooser:
    """A ``ModelChooser`` whose head was adapted (``adapt``) and whose confidence is the cycle probability
    (the published one for a lone source)."""

    def __init__(self, base: ModelChooser):
        self.base, self.direction = base, base.direction

    def __call__(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[np.ndarray, np.ndarray]:
        idx, conf = self.base(td, rows, frame)
        cams = rows[self.direction.src_col].to_numpy()
        for cam in np.unique(cams):
            at = np.flatnonzero(cams == cam)
            if len(at) < 2:
                continue
            scores, q, t = self.base.match(td, rows.iloc[at], frame)
            conf[at] = cycle_probability(q, t[0]).cpu().numpy()
        return idx, conf


def adapt(chooser: ModelChooser, rows: pd.DataFrame, corpus: Corpus, *, steps: int, lr: float, seed: int) -> list[dict]:
    """Fine-tune ``chooser.head`` in place on ``rows`` (the set to predict, unlabeled) by cycle consistency for
    ``steps`` full-batch Adam steps; returns the loss per step (the first entry before any step)."""
    groups = [(t, f, g) for t, f, g in cycle_groups(rows, chooser.direction) if len(g) >= 2]
    if not groups:
        log.warning("adaptation skipped: no frame has two sources or more to close a cycle")
        return []
    inputs = [chooser.frame_inputs(corpus[take], g, frame) for take, frame, g in groups]
    head = chooser.head
    torch.manual_seed(seed)
    params = [p for name, p in head.named_parameters() if not name.startswith("mlp_visible.")]
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    head.train()
    for step in range(steps + 1):
        loss = 0.0
        for src_feat, dst_feat, src_masks, cand in inputs:
            q, t = candidate_embeddings(head, src_feat, dst_feat, src_masks, cand)
            loss = loss - cycle_probability(q[:, 0], t[0]).clamp_min(1e-8).log().mean()
        loss = loss / len(inputs)
        history.append({"step": step, "cycle_loss": float(loss.detach())})
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    head.eval()
    log.info(
        "cycle adaptation on %d frame groups: loss %.4f -> %.4f",
        len(groups),
        history[0]["cycle_loss"],
        history[-1]["cycle_loss"],
    )
    return history


def adapted_chooser(
    chooser: ModelChooser, rows: pd.DataFrame, corpus: Corpus, settings: dict
) -> tuple[CycleChooser, list[dict]]:
    """A copy of ``chooser`` with its head adapted to ``rows`` (``settings``: steps, lr, seed), and the history."""
    base = copy.copy(chooser)
    base.head = copy.deepcopy(chooser.head)
    history = adapt(base, rows, corpus, steps=settings["steps"], lr=settings["lr"], seed=settings["seed"])
    return CycleChooser(base), history
