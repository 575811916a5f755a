"""Vectorised mask + context descriptors equal a plain per-mask loop over the spec's steps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from omama.data.masks import mask_box
from omama.model.descriptors import context_boxes, describe, mask_boxes


def loop_descriptors(features: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """Spec section 2, one mask at a time, as the published code loops (features (C, h, w), masks (N, H, W) bool)."""
    H, W = masks.shape[1:]
    grid = F.interpolate(features[None], size=(H // 4, W // 4), mode="bilinear", align_corners=False)[0]
    out = []
    for m in masks:
        small = F.interpolate(torch.from_numpy(m)[None, None].float(), size=(H // 4, W // 4), mode="nearest")[0, 0].bool()
        mask_part = grid[:, small].mean(1) if small.any() else torch.zeros(grid.shape[0])
        x, y, w, h = spec_box(m)
        x0, y0 = max(x - 100, 0) // 4, max(y - 100, 0) // 4
        x1, y1 = min(x + w + 100, W) // 4, min(y + h + 100, H) // 4
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        x0, y0 = min(x0, W // 4 - 1), min(y0, H // 4 - 1)
        x1, y1 = min(x1, W // 4), min(y1, H // 4)
        out.append(torch.cat([mask_part, grid[:, y0:y1, x0:x1].mean((1, 2))]))
    return torch.stack(out)


def spec_box(m: np.ndarray) -> tuple[int, int, int, int]:
    """(xmin, ymin, xmax - xmin, ymax - ymin): the published box, no +1; zeros when empty."""
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return 0, 0, 0, 0
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())


def random_masks(rng: np.random.Generator, n: int, H: int, W: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    masks = []
    for _ in range(n):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        ry, rx = rng.uniform(2, H / 2), rng.uniform(2, W / 2)
        masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
    masks.append(np.zeros((H, W), bool))
    masks.append(np.ones((H, W), bool))
    corner = np.zeros((H, W), bool)
    corner[-2:, -3:] = True
    masks.append(corner)
    return np.stack(masks)


def test_vectorised_equals_per_mask_loop_on_several_sizes():
    rng = np.random.default_rng(0)
    for (h, w), patch in (((4, 6), 14), ((5, 7), 14), ((3, 3), 16), ((20, 20), 14)):
        H, W = h * patch, w * patch
        feats = torch.from_numpy(rng.normal(size=(2, 8, h, w)).astype(np.float32))
        masks = np.stack([random_masks(rng, 6, H, W) for _ in range(2)])
        got = describe(feats, torch.from_numpy(masks))
        assert got.shape == (2, masks.shape[1], 16)
        for b in range(2):
            torch.testing.assert_close(got[b], loop_descriptors(feats[b], masks[b]), atol=1e-5, rtol=1e-5)


def test_empty_mask_gives_zero_mask_part_and_boxes_match_mask_box():
    rng = np.random.default_rng(1)
    masks = random_masks(rng, 4, 56, 84)
    boxes = mask_boxes(torch.from_numpy(masks))
    assert [tuple(b) for b in boxes.tolist()] == [mask_box(m) for m in masks]
    published = mask_boxes(torch.from_numpy(masks), inclusive=False)
    assert [tuple(b) for b in published.tolist()] == [spec_box(m) for m in masks]
    got = describe(torch.randn(1, 8, 4, 6), torch.from_numpy(masks)[None])
    assert torch.count_nonzero(got[0, 4, :8]) == 0
    assert torch.count_nonzero(got[0, 4, 8:]) > 0


def test_descriptors_are_differentiable_with_respect_to_features():
    feats = torch.randn(1, 4, 4, 4, requires_grad=True)
    masks = torch.from_numpy(random_masks(np.random.default_rng(2), 3, 56, 56))[None]
    describe(feats, masks).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def edge_case_masks(H: int, W: int) -> np.ndarray:
    """Empty, single pixels (on and off the 4-px sampling lattice), single rows and columns,
    an irregular blob with a hole and a far-away speck, and masks touching the borders."""
    cases = []

    def add(*slices):
        m = np.zeros((H, W), bool)
        for sl in slices:
            m[sl] = True
        cases.append(m)

    add()  # empty
    add((3, 3))  # 1 px, lost by the nearest downsampling
    add((8, 4))  # 1 px on the lattice
    add((H - 1, W - 1))  # 1 px in the far corner
    add((5, slice(None)))  # one full row, off the lattice
    add((8, slice(20, 30)))  # one short row
    add((slice(None), W - 2))  # one column at the right edge
    yy, xx = np.mgrid[:H, :W]
    blob = ((yy - H / 3) / (H / 5)) ** 2 + ((xx - W / 2) / (W / 7)) ** 2 < 1
    blob &= ~(((yy - H / 3) / (H / 15)) ** 2 + ((xx - W / 2) / (W / 20)) ** 2 < 1)
    blob[H - 30 : H - 27, 10:12] = True
    cases.append(blob)
    add((slice(0, 97), slice(0, 101)))  # box ends next to a cell boundary
    add((slice(H - 120, H), slice(W - 200, W)))  # touching bottom-right
    return np.stack(cases)


def test_descriptors_at_the_official_geometry_equal_the_spec_loop():
    """Ego 700x700 (grid 50x50) and exo 532x952 (grid 38x68), 100-px context, as published."""
    rng = np.random.default_rng(3)
    for h, w in ((50, 50), (38, 68)):
        H, W = 14 * h, 14 * w
        feats = torch.from_numpy(rng.normal(size=(1, 6, h, w)).astype(np.float32))
        masks = np.concatenate([edge_case_masks(H, W), random_masks(rng, 3, H, W)])
        got = describe(feats, torch.from_numpy(masks)[None])[0]
        want = loop_descriptors(feats[0], masks)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert torch.count_nonzero(got[0, :6]) == 0 and torch.count_nonzero(got[1, :6]) == 0  # empty; 1 px lost
        assert torch.count_nonzero(got[2, :6]) == 6  # 1 px on the lattice survives


def test_context_box_uses_the_published_box_without_plus_one():
    """A 1-px mask at x = y = 3: the box is (3, 3, 0, 0), so the context ends at (3 + 0 + 100) // 4
    = 25 cells, where a +1 box would reach cell 26."""
    H = W = 700
    m = np.zeros((H, W), bool)
    m[3, 3] = True
    masks = torch.from_numpy(m)[None, None]
    assert mask_boxes(masks, inclusive=False)[0, 0].tolist() == [3, 3, 0, 0]
    assert mask_boxes(masks)[0, 0].tolist() == [3, 3, 1, 1]
    assert context_boxes(mask_boxes(masks, inclusive=False), (H, W))[0, 0].tolist() == [0, 0, 25, 25]
    feats = torch.randn(1, 4, 50, 50)
    grid = F.interpolate(feats, size=(175, 175), mode="bilinear", align_corners=False)[0]
    got = describe(feats, masks)[0, 0, 4:]
    torch.testing.assert_close(got, grid[:, :25, :25].mean((1, 2)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, grid[:, :26, :26].mean((1, 2)), atol=1e-4)
