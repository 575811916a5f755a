"""Mask + context descriptors (O-MaMa's mask-context encoder), vectorised over all masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTION = 4
CONTEXT_PX = 100


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes (..., 4) as integer (x, y, w, h) of bool masks (..., H, W); (0, 0, 0, 0) when empty."""
    cols = masks.any(dim=-2)
    rows = masks.any(dim=-1)
    W, H = cols.shape[-1], rows.shape[-1]
    x0 = cols.int().argmax(-1)
    x1 = W - 1 - cols.flip(-1).int().argmax(-1)
    y0 = rows.int().argmax(-1)
    y1 = H - 1 - rows.flip(-1).int().argmax(-1)
    boxes = torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dim=-1)
    return torch.where(cols.any(-1, keepdim=True), boxes, torch.zeros_like(boxes)).long()


def context_boxes(boxes: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """(x, y, w, h) boxes in input px -> (x0, y0, x1, y1) cell ranges of the (H/4, W/4) grid."""
    H, W = input_size
    x, y, w, h = boxes.long().unbind(-1)
    x0 = (x - CONTEXT_PX).clamp(0, W) // REDUCTION
    y0 = (y - CONTEXT_PX).clamp(0, H) // REDUCTION
    x1 = (x + w + CONTEXT_PX).clamp(0, W) // REDUCTION
    y1 = (y + h + CONTEXT_PX).clamp(0, H) // REDUCTION
    x1 = torch.maximum(x0 + 1, x1)
    y1 = torch.maximum(y0 + 1, y1)
    gw, gh = W // REDUCTION, H // REDUCTION
    return torch.stack([x0.clamp(0, gw - 1), y0.clamp(0, gh - 1), x1.clamp(0, gw), y1.clamp(0, gh)], dim=-1)


def dense_grid(features: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of (B, C, h, w) to (B, C, H/4, W/4)."""
    H, W = input_size
    return F.interpolate(features, size=(H // REDUCTION, W // REDUCTION), mode="bilinear", align_corners=False)


def describe(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Descriptors (B, N, 2C) = [mean under mask, mean in context box] of every mask.

    features (B, C, h, w) patch grids; masks (B, N, H, W) bool at the backbone's input
    resolution. Both means are one batched matmul of normalised weights with the grid.
    """
    B, N, H, W = masks.shape
    grid = dense_grid(features, (H, W))
    gh, gw = grid.shape[-2:]
    small = F.interpolate(masks.float(), size=(gh, gw), mode="nearest").flatten(2)
    mask_w = small / small.sum(-1, keepdim=True).clamp(min=1)
    x0, y0, x1, y1 = context_boxes(mask_boxes(masks), (H, W)).unbind(-1)
    ys = torch.arange(gh, device=masks.device)
    xs = torch.arange(gw, device=masks.device)
    in_y = (ys >= y0[..., None]) & (ys < y1[..., None])
    in_x = (xs >= x0[..., None]) & (xs < x1[..., None])
    box = (in_y[..., :, None] & in_x[..., None, :]).flatten(2).to(grid.dtype)
    box_w = box / box.sum(-1, keepdim=True)
    weights = torch.cat([mask_w.to(grid.dtype), box_w], dim=1)
    pooled = weights @ grid.flatten(2).transpose(1, 2)
    return torch.cat([pooled[:, :N], pooled[:, N:]], dim=-1)
