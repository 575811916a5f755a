"""Vectorised mask + context descriptors equal a plain per-mask loop over the spec's steps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from omama.descriptors import describe, mask_boxes
from omama.masks import mask_box, resize_mask


def loop_descriptors(features: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """Spec section 2, one mask at a time (features (C, h, w), masks (N, H, W) bool)."""
    H, W = masks.shape[1:]
    grid = F.interpolate(features[None], size=(H // 4, W // 4), mode="bilinear", align_corners=False)[0]
    out = []
    for m in masks:
        small = torch.from_numpy(resize_mask(m, H // 4, W // 4))
        mask_part = grid[:, small].mean(1) if small.any() else torch.zeros(grid.shape[0])
        x, y, w, h = mask_box(m)
        x0, y0 = max(x - 100, 0) // 4, max(y - 100, 0) // 4
        x1, y1 = min(x + w + 100, W) // 4, min(y + h + 100, H) // 4
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        x0, y0 = min(x0, W // 4 - 1), min(y0, H // 4 - 1)
        x1, y1 = min(x1, W // 4), min(y1, H // 4)
        out.append(torch.cat([mask_part, grid[:, y0:y1, x0:x1].mean((1, 2))]))
    return torch.stack(out)


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
    got = describe(torch.randn(1, 8, 4, 6), torch.from_numpy(masks)[None])
    assert torch.count_nonzero(got[0, 4, :8]) == 0
    assert torch.count_nonzero(got[0, 4, 8:]) > 0


def test_descriptors_are_differentiable_with_respect_to_features():
    feats = torch.randn(1, 4, 4, 4, requires_grad=True)
    masks = torch.from_numpy(random_masks(np.random.default_rng(2), 3, 56, 56))[None]
    describe(feats, masks).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
