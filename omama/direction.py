"""The two directions of the correspondence benchmark, and the ego->exo submission geometry.

``exo2ego``: the source is an exo camera's mask, the destination the ego frame (O-MaMa's
published direction; official submission key ``exo-ego``, mask keys ``{exo_cam}_{ego_cam}``).
``ego2exo``: the source is the ego mask, the destination each exo camera's frame (official key
``ego-exo``, mask keys ``{ego_cam}_{exo_cam}``). A pair row always names both cameras
(``ego_cam``, ``exo_cam``); the direction says which one is the source.

Ego->exo predictions are square: the official evaluator (``evaluate_egoexo.py``) takes the
predicted mask as the exo frame at its evaluation size (longer side 480, aspect kept) padded
equally above and below (left and right for a portrait frame) to a square, and removes that
padding again before scoring (its ``remove_pad``); see :func:`pad_square` and :func:`remove_pad`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIRECTIONS = ("exo2ego", "ego2exo")


@dataclass(frozen=True)
class Direction:
    name: str

    def __post_init__(self):
        if self.name not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.name!r}; use one of {DIRECTIONS}")

    @property
    def src_view(self) -> str:
        return "exo" if self.name == "exo2ego" else "ego"

    @property
    def dst_view(self) -> str:
        return "ego" if self.name == "exo2ego" else "exo"

    @property
    def src_col(self) -> str:
        """Pair-table column naming the source camera."""
        return f"{self.src_view}_cam"

    @property
    def dst_col(self) -> str:
        return f"{self.dst_view}_cam"

    @property
    def present(self) -> str:
        """Column saying whether the destination view has the object."""
        return f"{self.dst_view}_present"

    @property
    def submission_key(self) -> str:
        return "exo-ego" if self.name == "exo2ego" else "ego-exo"

    def mask_key(self, ego_cam: str, exo_cam: str) -> str:
        """The submission's camera-pair key: source camera first."""
        return f"{exo_cam}_{ego_cam}" if self.name == "exo2ego" else f"{ego_cam}_{exo_cam}"


def pad_square(mask: np.ndarray) -> np.ndarray:
    """An evaluation-size exo mask padded (False) to a square, the shorter side centred with
    ``(side - short) // 2`` rows (columns) before it: what the official ``remove_pad`` undoes."""
    h, w = mask.shape
    side = max(h, w)
    out = np.zeros((side, side), bool)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = mask
    if remove_pad(out, (h, w)).shape != (h, w):
        raise ValueError(
            f"an exo frame of evaluation size {h}x{w} cannot be padded so that the official ego->exo "
            f"evaluator's remove_pad recovers it (it would give {remove_pad(out, (h, w)).shape})"
        )
    return out


def remove_pad(mask: np.ndarray, orig_size: tuple[int, int]) -> np.ndarray:
    """The official evaluator's unpadding of an ego->exo prediction, from its definition: with the
    ratio ``1. / orig_W * cur_W`` (landscape; ``1. / orig_H * cur_H`` otherwise) it computes the
    unpadded size ``(int(orig_H * ratio), int(orig_W * ratio))`` and removes ``(cur - new) // 2``
    rows (landscape) or columns at both ends, as ``img[d:-d]`` (so ``d == 0`` leaves nothing)."""
    cur_h, cur_w = mask.shape[:2]
    orig_h, orig_w = orig_size
    ratio = 1.0 / orig_w * cur_w if orig_w > orig_h else 1.0 / orig_h * cur_h
    new_h, new_w = int(orig_h * ratio), int(orig_w * ratio)
    if new_w > new_h:
        d = (cur_h - new_h) // 2
        return mask[d:-d]
    d = (cur_w - new_w) // 2
    return mask[:, d:-d]
