"""Synthetic photo pairs (a photos dataset's ``synthetic_photos``): stills of new synthetic scenes (not the dataset's takes)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from omama.io import atomic_path
from omama.synthetic.scene import EGO_CAM, MIN_VISIBLE_PIXELS, Take

log = logging.getLogger(__name__)

EXIF_ORIENTATION = 0x0112


def _save_jpeg(path: Path, rgb: np.ndarray, quality: int, rotated: bool = False) -> None:
    """Save ``rgb`` as displayed; ``rotated`` stores the pixels turned 90 degrees with EXIF
    orientation 6, so only readers that apply ``PIL.ImageOps.exif_transpose`` see ``rgb``."""
    from PIL import Image

    im = Image.fromarray(rgb)
    if not rotated:
        im.save(path, quality=quality)
        return
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    im.transpose(Image.Transpose.ROTATE_90).save(path, quality=quality, exif=exif.tobytes())


def _photo_frame(take: Take, want_absent: bool) -> int:
    """A frame of ``take`` for a still; with ``want_absent`` one where some object is visible
    in the exo view but not in the ego view (glance frames are tried first)."""
    if not want_absent:
        return take.frames // 2
    exo = next(iter(take.exo))
    for f in take.glances + list(range(0, take.frames, 5)):
        ego, other = take.render(EGO_CAM, f), take.render(exo, f)
        for i in range(len(take.objects)):
            if (ego.ids == i + 1).sum() < MIN_VISIBLE_PIXELS <= (other.ids == i + 1).sum():
                return f
    raise RuntimeError(f"no frame of photo scene {take.index} has an object absent in ego")


def write_photo_pairs(out_dir, *, n: int, seed: int, exo_size, ego_size: int, jpeg_quality: int) -> Path:
    """Write ``n`` synthetic photo pairs into ``out_dir`` (replaced atomically).

    ``exo_size`` is the landscape exo photo's [height, width], ``ego_size`` the square ego
    photo's side, ``jpeg_quality`` the JPEG quality of both (a photos dataset's ``synthetic_photos``).

    Layout: ``<pair>/exo.jpg``, ``<pair>/ego.jpg``, ``<pair>/masks/<object>.exo.png`` and
    ``<object>.ego.png`` (uint8 0/255, the image's size as displayed; an object absent from the
    ego photo has no ego png; only objects visible in the exo photo are written). Scenes are new
    (not the dataset's takes). Pair 0's exo photo is portrait; pair 1 (or the only pair) stores
    its exo photo rotated with an EXIF orientation tag, so readers must apply
    ``PIL.ImageOps.exif_transpose``; pair 1 also has an object absent from the ego photo.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for i in range(n):
            h, w = exo_size
            cfg = {
                "seed": seed,
                "seconds": 3,
                "objects": 4,
                "exo_cameras": 2,
                "ego_size": ego_size,
                "exo_size": [max(h, w), min(h, w)] if i == 0 else [h, w],
            }
            take = Take(cfg, 100_000 + i)
            frame = _photo_frame(take, want_absent=i == 1)
            pair = tmp / f"pair_{i:03d}"
            (pair / "masks").mkdir(parents=True)
            views = {"ego": take.render(EGO_CAM, frame), "exo": take.render("cam01", frame)}
            _save_jpeg(pair / "ego.jpg", views["ego"].rgb(), jpeg_quality)
            _save_jpeg(pair / "exo.jpg", views["exo"].rgb(), jpeg_quality, rotated=i == min(1, n - 1))
            for k, obj in enumerate(take.objects):
                name = obj.name.replace("/", "-")
                masks = {v: f.ids == k + 1 for v, f in views.items()}
                if masks["exo"].sum() < MIN_VISIBLE_PIXELS:
                    continue
                for v, m in masks.items():
                    if m.sum() >= MIN_VISIBLE_PIXELS:
                        Image.fromarray(m.astype(np.uint8) * 255).save(pair / "masks" / f"{name}.{v}.png")
            log.info("photo pair %s: frame %d of scene %d", pair.name, frame, take.index)
    return out_dir
