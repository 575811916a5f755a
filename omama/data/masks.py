"""Mask encodings: Ego-Exo4D's LZString(COCO RLE counts), plain COCO RLE, resizing.

All RLE work goes through pycocotools and all LZString work through lzstring.
"""

from __future__ import annotations

import cv2
import lzstring
import numpy as np
from pycocotools import mask as mask_utils

from omama.io import where

_LZ = lzstring.LZString()


class MaskDecodeError(ValueError):
    """A mask could not be decoded; the message names take, object, camera and frame."""


def encode_rle(mask: np.ndarray) -> dict:
    """Binary (H, W) mask -> plain COCO RLE {"size": [H, W], "counts": str}."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Plain COCO RLE -> bool (H, W)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


def encode_lzstring(mask: np.ndarray) -> str:
    """Binary mask -> Ego-Exo4D ``encodedMask`` string."""
    return _LZ.compressToEncodedURIComponent(encode_rle(mask)["counts"])


def lzstring_to_rle(encoded: str, height: int, width: int, **context) -> dict:
    """Ego-Exo4D ``encodedMask`` -> plain COCO RLE, validated by decoding it once.

    ``context`` (take, obj, cam, frame) names the mask in any error.
    """
    try:
        counts = _LZ.decompressFromEncodedURIComponent(encoded) if isinstance(encoded, str) else None
    except Exception as e:  # lzstring raises assorted errors on garbage
        raise MaskDecodeError(f"LZString decompression failed for {where(**context)}: {e}") from e
    if not counts:
        raise MaskDecodeError(f"LZString decompression gave nothing for {where(**context)}")
    rle = {"size": [int(height), int(width)], "counts": counts}
    try:
        m = decode_rle(rle)
    except Exception as e:
        raise MaskDecodeError(f"COCO RLE decode failed for {where(**context)}: {e}") from e
    if m.shape != (height, width) or encode_rle(m)["counts"] != counts:
        # pycocotools pads short run lengths with zeros: re-encoding tells whether the
        # runs really cover the declared height x width.
        raise MaskDecodeError(f"mask runs do not match the declared size {height}x{width} for {where(**context)}")
    return rle


def rle_area(rle: dict) -> int:
    counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return int(mask_utils.area({"size": list(rle["size"]), "counts": counts}))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width)."""
    if mask.shape == (height, width):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def eval_size(height: int, width: int, longer: int = 480) -> tuple[int, int]:
    """The official evaluation size: longer side 480, aspect kept, truncated to int.

    The ratio is computed exactly as the challenge evaluator does, ``1. / side * 480`` in
    double precision: the float rounding decides the truncation (288 -> 479 but 704 -> 480,
    where ``480 / side`` gives the opposite).
    """
    ratio = 1.0 / height * longer if height > width else 1.0 / width * longer
    return int(height * ratio), int(width * ratio)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a bool mask; (0, 0, 0, 0) when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
