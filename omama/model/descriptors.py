"""Mask + context descriptors (O-MaMa's mask-context encoder), vectorised over all masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTION = 4
CONTEXT_PX = 100


def mask_boxes(masks: torch.Tensor, *, inclusive: bool = True) -> torch.Tensor:
    """Boxes (..., 4) as integer (x, y, w, h) of bool masks (..., H, W); (0, 0, 0, 0) when empty.

    ``inclusive``: w = xmax - xmin + 1 (the pixels covered; used for box IoU). Otherwise the
    published code's convention, w = xmax - xmin (no +1), which the context box uses.
    """
    as_bytes = masks.view(torch.uint8)
    cols = as_bytes.amax(dim=-2).bool()
    rows = as_bytes.amax(dim=-1).bool()
    W, H = cols.shape[-1], rows.shape[-1]
    x0 = cols.int().argmax(-1)
    x1 = W - 1 - cols.flip(-1).int().argmax(-1)
    y0 = rows.int().argmax(-1)
    y1 = H - 1 - rows.flip(-1).int().argmax(-1)
    extra = int(inclusive)
    boxes = torch.stack([x0, y0, x1 - x0 + extra, y1 - y0 + extra], dim=-1)
    return torch.where(cols.any(-1, keepdim=True), boxes, torch.zeros_like(boxes)).long()


def context_boxes(boxes: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """Context cell ranges (x0, y0, x1, y1) of the (H/4, W/4) grid, end exclusive (spec section 2).

    ``boxes`` are (x, y, w, h) in input pixels in the published convention (w = xmax - xmin,
    ``mask_boxes(..., inclusive=False)``): grown by 100 px on every side, clamped to the image,
    corners divided by 4 and floored, at least one cell wide and tall, clamped to the grid.
    """
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


def upsampling_matrix(size_in: int, size_out: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(size_out, size_in) weights of 1-D linear upsampling with align_corners=False (as F.interpolate)."""
    eye = torch.eye(size_in, dtype=dtype, device=device)[:, None, :]
    return F.interpolate(eye, size=size_out, mode="linear", align_corners=False)[:, 0, :].T


def nearest_indices(size_in: int, size_out: int, device=None) -> torch.Tensor:
    """Source index of each output cell of a nearest-neighbour resize (as F.interpolate "nearest")."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    idx = (torch.arange(size_out, dtype=torch.float32) * scale).floor().long().clamp(max=size_in - 1)
    return idx.to(device)


def describe(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Descriptors (B, N, 2C) = [mean under mask, mean in context box] of every mask.

    features (B, C, h, w) patch grids; masks (B, N, H, W) bool at the backbone's input
    resolution. Means are taken over the grid upsampled bilinearly to (H/4, W/4); as that
    upsampling is linear and separable, the pooling weights are pulled back to the patch
    grid instead (Uy^T W Ux) and applied to it in one batched matmul.
    """
    B, N, H, W = masks.shape
    C, h, w = features.shape[1:]
    gh, gw = H // REDUCTION, W // REDUCTION
    uy = upsampling_matrix(h, gh, features.dtype, features.device)
    ux = upsampling_matrix(w, gw, features.dtype, features.device)
    iy, ix = nearest_indices(H, gh, masks.device), nearest_indices(W, gw, masks.device)
    small = masks[:, :, iy][:, :, :, ix].to(features.dtype)
    small = small / small.sum((-2, -1), keepdim=True).clamp(min=1)
    mask_w = uy.T @ (small @ ux)
    x0, y0, x1, y1 = context_boxes(mask_boxes(masks, inclusive=False), (H, W)).unbind(-1)
    cells_y = torch.arange(gh, device=masks.device)
    cells_x = torch.arange(gw, device=masks.device)
    in_y = ((cells_y >= y0[..., None]) & (cells_y < y1[..., None])).to(features.dtype)
    in_x = ((cells_x >= x0[..., None]) & (cells_x < x1[..., None])).to(features.dtype)
    box_y = (in_y @ uy) / in_y.sum(-1, keepdim=True)
    box_x = (in_x @ ux) / in_x.sum(-1, keepdim=True)
    box_w = box_y[..., :, None] * box_x[..., None, :]
    weights = torch.cat([mask_w, box_w], dim=1).flatten(2)
    pooled = weights @ features.flatten(2).transpose(1, 2)
    return torch.cat([pooled[:, :N], pooled[:, N:]], dim=-1)
