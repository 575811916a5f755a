"""Mask overlays: exo frame with the source mask, ego frame with ground truth and predictions,
side by side as one inline PNG (PIL only, no matplotlib)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from omama.data.masks import decode_rle, resize_mask
from omama.io import load_frame, read_json
from omama.report.tables import SAMPLE_KEY

COLOURS = {"exo": (255, 140, 0), "gt": (0, 200, 80), "pred": (230, 30, 200), "pred2": (30, 140, 255)}


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def image_uri(rgb: np.ndarray) -> str:
    """A photo-like panel as a JPEG data URI (a third of an optimised PNG's bytes, in a hundredth of its time)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return data_uri(buf.getvalue(), "image/jpeg")


def blend(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    """Tint ``mask`` in ``colour`` and draw its outline, on a copy of ``rgb``."""
    out = rgb.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = colour
    return out.astype(np.uint8)


def panel_row(panels: list[np.ndarray], height: int = 180) -> np.ndarray:
    """Resize panels to one height and place them side by side with a white gap."""
    scaled = []
    for p in panels:
        w = max(1, round(p.shape[1] * height / p.shape[0]))
        scaled.append(np.asarray(Image.fromarray(p).resize((w, height), Image.BILINEAR)))
        scaled.append(np.full((height, 6, 3), 255, np.uint8))
    return np.concatenate(scaled[:-1], axis=1)


class Frames:
    """Frames and ground truth of one results tree (main run or photo-pair set).

    ``files`` names the tree's paths: a ``Layout``, or the report's declared ``Inputs`` of it."""

    def __init__(self, files):
        self.files = files
        self._ann: dict[str, dict] = {}

    def annotation(self, take: str) -> dict:
        if take not in self._ann:
            self._ann[take] = read_json(self.files.annotation(take), "annotation file")
        return self._ann[take]

    def image(self, take: str, cam: str, frame: int) -> np.ndarray:
        return load_frame(self.files.image(take, cam, frame), take, cam, frame)

    def mask(self, take: str, obj: str, cam: str, frame: int, shape: tuple[int, int]) -> np.ndarray:
        rle = self.annotation(take)["masks"].get(obj, {}).get(cam, {}).get(str(frame))
        if rle is None:
            return np.zeros(shape, bool)
        return resize_mask(decode_rle(rle), *shape)


def predicted_mask(predictions: dict, row, shape: tuple[int, int]) -> np.ndarray:
    """The submitted mask of one sample, resized to ``shape``; empty if not predicted."""
    take = predictions["exo-ego"]["results"].get(row.take_uid, {})
    entry = take.get("masks", {}).get(row.object, {}).get(f"{row.exo_cam}_{row.ego_cam}", {}).get(str(row.frame))
    if entry is None:
        return np.zeros(shape, bool)
    return resize_mask(decode_rle(entry["pred_mask"]), *shape)


def overlay(frames: Frames, row, preds: list[dict]) -> str:
    """Exo image with the source mask, ego with ground truth, then ego with each prediction."""
    frame = int(row.frame)
    exo = frames.image(row.take_uid, row.exo_cam, frame)
    ego = frames.image(row.take_uid, row.ego_cam, frame)
    panels = [
        blend(exo, frames.mask(row.take_uid, row.object, row.exo_cam, frame, exo.shape[:2]), COLOURS["exo"]),
        blend(ego, frames.mask(row.take_uid, row.object, row.ego_cam, frame, ego.shape[:2]), COLOURS["gt"]),
    ]
    for p, colour in zip(preds, (COLOURS["pred"], COLOURS["pred2"])):
        panels.append(blend(ego, predicted_mask(p, row, ego.shape[:2]), colour))
    return image_uri(panel_row(panels))


def pick_samples(df: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    """Best, median and worst ``n`` present samples by IoU, disjoint (ties broken by the sample key)."""
    d = df[df.ego_present].sort_values(["iou", *SAMPLE_KEY], ascending=[False, True, True, True, True, True])
    if d.empty or n == 0:
        return {}
    best, rest = d.head(n), d.iloc[n:]
    worst, rest = rest.tail(n).iloc[::-1], rest.iloc[: max(0, len(rest) - n)]
    mid = max(0, len(rest) // 2 - n // 2)
    groups = {"best": best, "median": rest.iloc[mid : mid + n], "worst": worst}
    return {k: v for k, v in groups.items() if len(v)}
