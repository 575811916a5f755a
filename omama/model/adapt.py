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


def with_extra_sources(inputs: tuple, extra) -> tuple:
    """A frame's tensors (``ModelChooser.frame_inputs``) with ``extra`` source masks (K, H, W; any size) after the
    given ones: more sources for the cycle to return to (``omama match`` gives one object: the exo photo's own
    proposals close its cycle)."""
    src_feat, dst_feat, src_masks, cand = inputs
    if extra is None or not len(extra):
        return inputs
    size = tuple(src_masks.shape[-2:])
    extra = torch.nn.functional.interpolate(
        torch.from_numpy(np.asarray(extra, np.float32))[:, None], size=size, mode="nearest"
    )
    extra = extra.to(src_masks.device) > 0.5
    k = len(extra)
    return torch.cat([src_feat, src_feat[:1].expand(k, -1, -1, -1)]), dst_feat, torch.cat([src_masks, extra]), cand


class CycleChooser:
    """A ``ModelChooser`` whose head was adapted (``adapt``) and whose confidence is the cycle probability
    (the published one for a lone source without ``extra`` sources)."""

    def __init__(self, base: ModelChooser, extra=None):
        self.base, self.direction, self.extra = base, base.direction, extra

    def __call__(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[np.ndarray, np.ndarray]:
        idx, conf = self.base(td, rows, frame)
        cams = rows[self.direction.src_col].to_numpy()
        for cam in np.unique(cams):
            at = np.flatnonzero(cams == cam)
            extra = None if self.extra is None else self.extra(td, frame, cam)
            if len(at) + (0 if extra is None else len(extra)) < 2:
                continue
            inputs = with_extra_sources(self.base.frame_inputs(td, rows.iloc[at], frame), extra)
            with torch.no_grad():
                q, t = candidate_embeddings(self.base.head, *inputs)
            conf[at] = cycle_probability(q[:, 0], t[0])[: len(at)].cpu().numpy()
        return idx, conf


def adapt(
    chooser: ModelChooser, rows: pd.DataFrame, corpus: Corpus, *, steps: int, lr: float, seed: int, extra=None
) -> list[dict]:
    """Fine-tune ``chooser.head`` in place on ``rows`` (the set to predict, unlabeled) by cycle consistency for
    ``steps`` full-batch Adam steps; returns the loss per step (the first entry before any step). ``extra``
    (take data, frame, source camera) -> extra source masks, closes cycles of a lone given source."""
    inputs = []
    for take, frame, g in cycle_groups(rows, chooser.direction):
        more = None if extra is None else extra(corpus[take], frame, g[chooser.direction.src_col].iloc[0])
        if len(g) + (0 if more is None else len(more)) >= 2:
            inputs.append(with_extra_sources(chooser.frame_inputs(corpus[take], g, frame), more))
    if not inputs:
        log.warning("adaptation skipped: no frame has two sources or more to close a cycle")
        return []
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
        len(inputs),
        history[0]["cycle_loss"],
        history[-1]["cycle_loss"],
    )
    return history


def adapted_chooser(
    chooser: ModelChooser, rows: pd.DataFrame, corpus: Corpus, settings: dict, extra=None
) -> tuple[CycleChooser, list[dict]]:
    """A copy of ``chooser`` with its head adapted to ``rows`` (``settings``: steps, lr, seed; ``extra``: see
    ``adapt``), and the history."""
    base = copy.copy(chooser)
    base.head = copy.deepcopy(chooser.head)
    history = adapt(base, rows, corpus, steps=settings["steps"], lr=settings["lr"], seed=settings["seed"], extra=extra)
    return CycleChooser(base, extra), history
