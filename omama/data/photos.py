"""The robustness set: user photo pairs turned into one-frame takes.

A photo-pair folder holds ``<pair>/exo.(jpg|png)``, ``<pair>/ego.(jpg|png)`` and
``<pair>/masks/<object>.exo.png`` / ``<object>.ego.png`` (an object absent from the ego
photo has no ego mask, or an all-zero one). Photos may have any size and orientation: the
EXIF orientation is applied, and masks must match the photo as displayed. Each pair becomes
a take in the per-take layout of ``extract`` (ego camera "aria_ego": the official evaluator
finds the ego camera by "aria" in its name; exo camera "exo"; frame 0; native size kept), so
features, proposals, prediction and evaluation run unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from omama.data.masks import encode_rle
from omama.io import atomic_path, safe_name, write_json

log = logging.getLogger(__name__)

EGO, EXO, FRAME = "ego", "exo", 0  # views: the photo and mask file names
CAMS = {EGO: "aria_ego", EXO: "exo"}  # camera ids in the take
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SCENARIO = "robustness photo pair"


class PhotoPairError(ValueError):
    """A photo pair is malformed; the message names the pair, object and view."""


def photo(pair_dir: Path, view: str) -> Path:
    """The one ``exo``/``ego`` image of a pair."""
    found = [p for p in sorted(pair_dir.iterdir()) if p.stem.lower() == view and p.suffix.lower() in IMAGE_SUFFIXES]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise PhotoPairError(
            f"pair {pair_dir.name!r}, view {view!r}: {what} {view} image "
            f"({'/'.join(view + s for s in IMAGE_SUFFIXES)}) in {pair_dir}"
        )
    return found[0]


def load_photo(path: Path, pair: str, view: str) -> np.ndarray:
    """RGB uint8 as displayed (EXIF orientation applied)."""
    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except OSError as e:
        raise PhotoPairError(f"pair {pair!r}, view {view!r}: cannot read image {path}: {e}") from e


def load_mask(path: Path, shape: tuple[int, int], pair: str, obj: str, view: str) -> np.ndarray:
    """A binary mask image (any of 0/1, 0/255, palette, RGB) as bool; must match ``shape`` (H, W)."""
    try:
        with Image.open(path) as im:
            m = np.asarray(im.convert("L"))
    except OSError as e:
        raise PhotoPairError(f"pair {pair!r}, object {obj!r}, view {view!r}: cannot read mask {path}: {e}") from e
    if m.shape != tuple(shape):
        raise PhotoPairError(
            f"pair {pair!r}, object {obj!r}, view {view!r}: mask {path.name} is {m.shape[1]}x{m.shape[0]} (WxH) but the "
            f"{view} photo is {shape[1]}x{shape[0]} as displayed (after its EXIF orientation); draw masks on the "
            f"displayed photo"
        )
    return m > m.max() // 2 if m.max() > 0 else np.zeros(m.shape, bool)


def mask_files(pair_dir: Path) -> dict[str, dict[str, Path]]:
    """{object: {view: path}} from ``masks/<object>.<view>.png``."""
    d = pair_dir / "masks"
    if not d.is_dir():
        raise PhotoPairError(f"pair {pair_dir.name!r}: no masks/ folder in {pair_dir}")
    out: dict[str, dict[str, Path]] = {}
    for p in sorted(d.iterdir()):
        stem, _, view = p.name[: -len(p.suffix)].rpartition(".")
        if p.suffix.lower() != ".png" or view not in (EGO, EXO) or not stem:
            raise PhotoPairError(
                f"pair {pair_dir.name!r}: unexpected file masks/{p.name} (expected <object>.exo.png or <object>.ego.png)"
            )
        out.setdefault(stem, {})[view] = p
    return out


def list_pairs(folder: str | Path) -> list[str]:
    """The pair names of a photo-pair folder (its visible sub-folders), each checked for both photos."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PhotoPairError(f"robustness photo folder {folder} does not exist")
    pairs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not pairs:
        raise PhotoPairError(f"robustness photo folder {folder} holds no pair folders")
    for name in pairs:
        try:
            safe_name(name, "pair", f"a folder in {folder}")  # it becomes a take uid: a folder name in the results
        except ValueError as e:
            raise PhotoPairError(str(e)) from None
        photo(folder / name, EXO), photo(folder / name, EGO), mask_files(folder / name)
    return pairs


def take_record(pair: str) -> dict:
    """The take-index record of a pair (the fields the pairs stage reads)."""
    return {
        "take_uid": pair,
        "take_name": pair,
        "scenario": SCENARIO,
        "parent_scenario": "robustness",
        "annotation_split": "val",
        "ego_cam": CAMS[EGO],
        "exo_cams": [CAMS[EXO]],
        "frames": [FRAME],
    }


def write_index(*, folder: str | Path, out_takes: str | Path) -> list[str]:
    """Check the folder and write its take-index (list of records); returns the pair names."""
    pairs = list_pairs(folder)
    write_json(out_takes, [take_record(p) for p in pairs], indent=1)
    log.info("%d photo pairs in %s", len(pairs), folder)
    return pairs


def convert_pair(*, pair_dir: str | Path, annotation_out: str | Path, images_out: str | Path, jpeg_quality: int = 95) -> dict:
    """Write one pair as a take: ``images/{ego,exo}/0.jpg`` and ``annotation.json``; returns the annotation."""
    pair_dir = Path(pair_dir)
    pair = pair_dir.name
    images = {v: load_photo(photo(pair_dir, v), pair, v) for v in (EGO, EXO)}
    sizes = {CAMS[v]: [int(images[v].shape[0]), int(images[v].shape[1])] for v in (EGO, EXO)}
    masks, annotated, skipped = {}, {}, []
    for obj, files in mask_files(pair_dir).items():
        m = {v: load_mask(p, images[v].shape[:2], pair, obj, v) for v, p in files.items()}
        if EXO not in m or not m[EXO].any():
            skipped.append(
                {
                    "object": obj,
                    "camera": CAMS[EXO],
                    "frame": FRAME,
                    "reason": "no exo mask" if EXO not in m else "empty exo mask",
                }
            )
            continue
        masks[obj] = {CAMS[v]: {str(FRAME): encode_rle(mask)} for v, mask in m.items() if mask.any()}
        annotated[obj] = {CAMS[EGO]: [FRAME], CAMS[EXO]: [FRAME]}
    if not masks:
        raise PhotoPairError(f"pair {pair!r}: no object has a non-empty exo mask in {pair_dir / 'masks'}")
    with atomic_path(images_out) as tmp:
        for v in (EGO, EXO):
            (tmp / CAMS[v]).mkdir(parents=True)
            Image.fromarray(images[v]).save(tmp / CAMS[v] / f"{FRAME}.jpg", quality=jpeg_quality)
    annotation = {
        "take_uid": pair,
        "take_name": pair,
        "scenario": SCENARIO,
        "parent_scenario": "robustness",
        "ego_cam": CAMS[EGO],
        "exo_cams": [CAMS[EXO]],
        "native_size": sizes,
        "image_size": sizes,
        "subsample_idx": [FRAME],
        "masks": masks,
        "annotated_frames": annotated,
        "skipped": skipped,
    }
    write_json(annotation_out, annotation)
    log.info(
        "pair %s: %d objects (%d absent in ego), %d skipped",
        pair,
        len(masks),
        sum(CAMS[EGO] not in v for v in masks.values()),
        len(skipped),
    )
    return annotation
