"""Adjacency-aware hard negatives: distinct, never the anchor, padded when proposals run out."""

from __future__ import annotations

import numpy as np
import pytest

from omama.data.masks import mask_box
from omama.model.negatives import PADDING, POSITIVE, candidate_set, delaunay_neighbours, hard_negatives


def square_masks(centres, size=64, half=2) -> np.ndarray:
    masks = np.zeros((len(centres), size, size), bool)
    for m, (x, y) in zip(masks, centres):
        m[max(y - half, 0) : y + half + 1, max(x - half, 0) : x + half + 1] = True
    return masks


def boxes_of(masks):
    return np.array([mask_box(m) for m in masks]).reshape(-1, 4)


def grid_centres(n, step=6):
    side = int(np.ceil(np.sqrt(n)))
    return [(4 + step * (i % side), 4 + step * (i // side)) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 5, 40, 100])
def test_candidate_sets_hold_31_distinct_negatives_or_padding(n):
    masks = square_masks(grid_centres(n))
    gt = square_masks([(10, 10)])[0] if n else square_masks([(30, 30)])[0]
    for seed in range(5):
        cs = candidate_set(masks, boxes_of(masks), mask_box(gt), 31, np.random.default_rng(seed))
        assert len(cs.slots) == 32
        assert cs.slots[cs.target] == POSITIVE and (cs.slots == POSITIVE).sum() == 1
        negs = cs.slots[cs.slots >= 0]
        assert len(set(negs.tolist())) == len(negs)
        assert cs.anchor not in negs.tolist()
        available = max(n - 1, 0) if cs.anchor >= 0 else n
        assert len(negs) == min(31, available)
        assert (cs.slots == PADDING).sum() == 31 - len(negs)
        assert np.all(cs.slots[(cs.slots != PADDING).sum() :] == PADDING)


def test_anchor_is_the_best_box_overlap_and_neighbours_come_first():
    centres = grid_centres(100)
    masks = square_masks(centres)
    anchor = 55
    gt_box = mask_box(masks[anchor])
    near = delaunay_neighbours(np.array(centres, float), anchor)
    assert 4 <= len(near) < 31 and anchor not in near
    negs, a = hard_negatives(masks, boxes_of(masks), gt_box, 31, np.random.default_rng(0))
    assert a == anchor
    assert set(negs[: len(near)].tolist()) == near
    assert len(set(negs.tolist())) == 31


def test_many_neighbours_are_sampled_down_to_k():
    masks = square_masks(grid_centres(100))
    negs, a = hard_negatives(masks, boxes_of(masks), mask_box(masks[55]), 3, np.random.default_rng(0))
    assert len(negs) == 3 and a == 55
    assert set(negs.tolist()) <= delaunay_neighbours(np.array(grid_centres(100), float), 55)


def test_collinear_duplicate_and_empty_proposals_fall_back_cleanly():
    line = square_masks([(4 + 5 * i, 30) for i in range(10)])
    negs, a = hard_negatives(line, boxes_of(line), mask_box(line[3]), 31, np.random.default_rng(0))
    assert a == 3 and sorted(negs.tolist()) == [i for i in range(10) if i != 3]
    dup = square_masks([(10, 10)] * 4 + [(40, 40)])
    negs, a = hard_negatives(dup, boxes_of(dup), mask_box(dup[4]), 31, np.random.default_rng(0))
    assert a == 4 and sorted(negs.tolist()) == [0, 1, 2, 3]
    with_empty = square_masks(grid_centres(6))
    with_empty[2] = False
    cs = candidate_set(with_empty, boxes_of(with_empty), mask_box(with_empty[0]), 31, np.random.default_rng(0))
    assert 2 not in cs.slots.tolist() and 0 not in cs.slots.tolist()
    assert (cs.slots >= 0).sum() == 4


def test_absent_object_has_no_anchor_and_random_negatives():
    masks = square_masks(grid_centres(10))
    cs = candidate_set(masks, boxes_of(masks), None, 31, np.random.default_rng(0))
    assert cs.anchor == -1 and sorted(cs.slots[cs.slots >= 0].tolist()) == list(range(10))


def test_same_seed_same_set():
    masks = square_masks(grid_centres(60))
    a = candidate_set(masks, boxes_of(masks), mask_box(masks[20]), 31, np.random.default_rng(7))
    b = candidate_set(masks, boxes_of(masks), mask_box(masks[20]), 31, np.random.default_rng(7))
    assert np.array_equal(a.slots, b.slots) and a.target == b.target
