"""Training candidate sets: the positive plus adjacency-aware hard negatives.

Slots of a candidate set hold a proposal index (>= 0), ``POSITIVE`` (the ground-truth
destination mask) or ``PADDING`` (no candidate: a frame with fewer usable proposals than
negatives asked for; the loss gives padded slots no probability mass).
Empty proposals are never candidates. The anchor (the proposal whose box best overlaps
the ground-truth box, a near-copy of the positive) is never a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE = -1
PADDING = -2


def centroids(masks: np.ndarray) -> np.ndarray:
    """(N, 2) (x, y) mask centroids of bool masks (N, H, W); NaN for empty masks."""
    n = masks.shape[0]
    area = masks.reshape(n, -1).sum(1).astype(np.float64)
    ys = np.arange(masks.shape[1], dtype=np.float64)
    xs = np.arange(masks.shape[2], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (masks.sum(1) * xs).sum(1) / area
        cy = (masks.sum(2) * ys).sum(1) / area
    return np.stack([cx, cy], axis=1)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x, y, w, h) box with (N, 4) boxes; 0 where the union is empty."""
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def delaunay_neighbours(points: np.ndarray, vertex: int, order: int = 2) -> set[int]:
    """Indices (into ``points``) within ``order`` Delaunay edges of ``vertex``, itself excluded.

    Fewer than 3 points, or collinear/degenerate ones, have no triangulation: empty set.
    """
    if len(points) < 3:
        return set()
    from scipy.spatial import Delaunay, QhullError  # here: importing it costs every prediction job a second

    try:
        indptr, indices = Delaunay(points).vertex_neighbor_vertices
    except (QhullError, ValueError):
        return set()
    found, frontier = {vertex}, {vertex}
    for _ in range(order):
        frontier = {int(j) for i in frontier for j in indices[indptr[i] : indptr[i + 1]]} - found
        found |= frontier
    return found - {vertex}


@dataclass
class CandidateSet:
    slots: np.ndarray  # (k + 1,) proposal index, POSITIVE or PADDING
    target: int  # slot of the positive
    anchor: int  # proposal index of the anchor, -1 when there is none


def hard_negatives(masks: np.ndarray, boxes: np.ndarray, gt_box, k: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Up to ``k`` distinct proposal indices: the anchor's Delaunay neighbours to order 2,
    sampled down to ``k`` or filled at random from the other non-empty proposals.

    ``gt_box`` (x, y, w, h) of the ground truth, or None (object absent: no anchor, random negatives).
    Returns (negatives, anchor index or -1).
    """
    usable = np.flatnonzero(masks.reshape(len(masks), -1).any(1)) if len(masks) else np.zeros(0, int)
    anchor = -1
    if gt_box is not None and len(usable) and np.asarray(gt_box)[2:].prod() > 0:
        anchor = int(usable[np.argmax(box_iou(gt_box, boxes[usable]))])
    pool = usable[usable != anchor]
    near = np.zeros(0, int)
    if anchor >= 0:
        pts = centroids(masks[usable])
        local = delaunay_neighbours(pts, int(np.flatnonzero(usable == anchor)[0]))
        near = np.sort(usable[sorted(local)])
    if len(near) >= k:
        return rng.choice(near, size=k, replace=False), anchor
    rest = np.setdiff1d(pool, near)
    fill = rng.choice(rest, size=min(k - len(near), len(rest)), replace=False)
    return np.concatenate([near, fill]).astype(int), anchor


def candidate_set(masks: np.ndarray, boxes: np.ndarray, gt_box, k: int, rng: np.random.Generator) -> CandidateSet:
    """k + 1 slots: the positive at a random slot, the hard negatives in the others, padding last."""
    negatives, anchor = hard_negatives(masks, boxes, gt_box, k, rng)
    negatives = rng.permutation(negatives)
    filled = np.concatenate([negatives, np.full(k - len(negatives), PADDING, dtype=int)])
    target = int(rng.integers(0, len(negatives) + 1))
    slots = np.insert(filled, target, POSITIVE)
    return CandidateSet(slots=slots.astype(int), target=target, anchor=anchor)
