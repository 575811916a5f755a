"""The photos dataset kind: user photo pairs turned into one-frame takes.

A photo-pair folder holds ``<pair>/exo.jpg``, ``<pair>/ego.jpg`` (or any other format OpenCV reads)
and ``<pair>/masks/<object>.exo.png`` / ``<object>.ego.png`` (an object absent from the ego
photo has no ego mask, or an all-zero one). Hidden files (``.DS_Store``) are ignored. Photos may have
any size and orientation: the EXIF orientation is applied, and masks must match the photo as
displayed. Each pair becomes a take in the per-take layout of ``extract`` (ego camera "aria_ego":
the official evaluator finds the ego camera by "aria" in its name; exo camera "exo"; frame 0;
frames are working copies at most ``max_side`` px, masks at the photo's size), so features,
proposals, prediction and evaluation run unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omama.data.masks import encode_rle
from omama.io import atomic_path, read_image, safe_name, write_json
from omama.layout import frame_file

log = logging.getLogger(__name__)

EGO, EXO, FRAME = "ego", "exo", 0  # views: the photo and mask file names
CAMS = {EGO: "aria_ego", EXO: "exo"}  # camera ids in the take
SCENARIO = "photo pair"


class PhotoPairError(ValueError):
    """A photo pair is malformed; the message names the pair, object and view."""


def visible(folder: Path) -> tuple[list[Path], list[Path]]:
    """(entries of ``folder`` not starting with a dot, sorted; hidden ones such as .DS_Store, which are ignored)."""
    entries = sorted(folder.iterdir())
    return [p for p in entries if not p.name.startswith(".")], [p for p in entries if p.name.startswith(".")]


def photo(pair_dir: Path, view: str) -> Path:
    """The one ``exo``/``ego`` image of a pair (any format OpenCV reads: exo.jpg, exo.png, exo.bmp, ...)."""
    found = [p for p in visible(pair_dir)[0] if p.is_file() and p.stem.lower() == view]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise PhotoPairError(
            f"pair {pair_dir.name!r}, view {view!r}: {what} {view} image ({view}.jpg, {view}.png or any other "
            f"format OpenCV reads) in {pair_dir}{': ' + ', '.join(p.name for p in found) if found else ''}"
        )
    return found[0]


def load_photo(path: Path, pair: str, view: str) -> np.ndarray:
    """RGB uint8 as displayed (EXIF orientation applied), from any format OpenCV reads."""
    bgr = read_image(path, cv2.IMREAD_COLOR, f"{view} photo of pair {pair!r}", PhotoPairError)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _binary(m: np.ndarray) -> np.ndarray:
    return m > m.max() // 2 if m.max() > 0 else np.zeros(m.shape, bool)


def load_mask(path: Path, shape: tuple[int, int], pair: str, obj: str, view: str) -> np.ndarray:
    """A binary mask image as bool: grey, colour (its luminance) or palette, 0/1 or 0/255 (any format
    OpenCV reads); with an alpha channel that varies, the alpha channel when the colours are uniform or
    say the same, an error when they disagree. Must match ``shape`` (H, W)."""
    what = f"pair {pair!r}, object {obj!r}, view {view!r}"
    image = read_image(path, cv2.IMREAD_UNCHANGED, f"mask of {what}", PhotoPairError)
    alpha = image[..., 3] if image.ndim == 3 and image.shape[2] == 4 else None
    colour = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    if colour.shape != tuple(shape):
        raise PhotoPairError(
            f"{what}: mask {path} is {colour.shape[1]}x{colour.shape[0]} (WxH) but the "
            f"{view} photo is {shape[1]}x{shape[0]} as displayed (after its EXIF orientation); draw masks on the "
            f"displayed photo"
        )
    if alpha is None or alpha.min() == alpha.max():  # opaque: the colours are the mask
        return _binary(colour)
    mask = _binary(alpha)
    if colour.min() != colour.max() and not np.array_equal(mask, _binary(colour)):
        raise PhotoPairError(
            f"{what}: mask {path} is ambiguous: its alpha channel and its colours mark different pixels. Save the "
            f"mask either opaque (white object on black) or with the object in the alpha channel and one colour"
        )
    return mask


def pair_masks(pair_dir: Path) -> dict[str, dict[str, Path]]:
    """{object: {view: path}} from ``masks/<object>.<view>.<image suffix>``; hidden files are ignored."""
    d = pair_dir / "masks"
    if not d.is_dir():
        raise PhotoPairError(f"pair {pair_dir.name!r}: no masks/ folder in {pair_dir}")
    files, hidden = visible(d)
    if hidden:
        log.info("pair %s: %d hidden file(s) in masks/ ignored: %s", pair_dir.name, len(hidden), [p.name for p in hidden])
    out: dict[str, dict[str, Path]] = {}
    for p in files:
        stem, _, view = p.name[: -len(p.suffix)].rpartition(".")
        if not p.suffix or view not in (EGO, EXO) or not stem or not p.is_file():
            raise PhotoPairError(
                f"pair {pair_dir.name!r}: unexpected file masks/{p.name} (expected <object>.exo.png or "
                f"<object>.ego.png, or another image format OpenCV reads)"
            )
        if view in out.get(stem, {}):
            raise PhotoPairError(
                f"pair {pair_dir.name!r}: two {view} masks of object {stem!r}: {out[stem][view].name}, {p.name}"
            )
        out.setdefault(stem, {})[view] = p
    return out


def list_pairs(folder: str | Path) -> list[str]:
    """The pair names of a photo-pair folder (its visible sub-folders), each checked for both photos."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PhotoPairError(f"photo folder {folder} does not exist")
    entries = visible(folder)[0]
    pairs = [p.name for p in entries if p.is_dir()]
    if not pairs:
        raise PhotoPairError(f"photo folder {folder} holds no pair folders")
    others = [p.name for p in entries if not p.is_dir()]
    if others:
        log.info("%d file(s) beside the pair folders in %s ignored: %s", len(others), folder, others)
    for name in pairs:
        try:
            safe_name(name, "pair", f"a folder in {folder}")  # it becomes a take uid: a folder name in the results
        except ValueError as e:
            raise PhotoPairError(str(e)) from None
        photo(folder / name, EXO), photo(folder / name, EGO), pair_masks(folder / name)
    return pairs


def take_record(pair: str) -> dict:
    """The take-index record of a pair (the fields the pairs stage reads)."""
    return {
        "take_uid": pair,
        "take_name": pair,
        "scenario": SCENARIO,
        "parent_scenario": "photos",
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


def working_size(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(H, W) of a photo's working copy: its longer side at most ``max_side`` (None: the photo's own size)."""
    h, w = shape[:2]
    s = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def convert_pair(
    *,
    pair_dir: str | Path,
    annotation_out: str | Path,
    images_out: str | Path,
    jpeg_quality: int = 95,
    max_side: int | None = None,
) -> dict:
    """Write one pair folder as a take (see ``convert_files``)."""
    pair_dir = Path(pair_dir)
    return convert_files(
        pair=pair_dir.name,
        photos={v: photo(pair_dir, v) for v in (EGO, EXO)},
        masks=pair_masks(pair_dir),
        annotation_out=annotation_out,
        images_out=images_out,
        jpeg_quality=jpeg_quality,
        max_side=max_side,
    )


def convert_files(
    *,
    pair: str,
    photos: dict[str, Path],
    masks: dict[str, dict[str, Path]],
    annotation_out: str | Path,
    images_out: str | Path,
    jpeg_quality: int = 95,
    max_side: int | None = None,
) -> dict:
    """Write one pair as a take: ``images/{ego,exo}/0.jpg`` and ``annotation.json``; returns the annotation.

    ``photos``: {view: file}; ``masks``: {object: {view: file}}. The frames are working copies of the
    photos, their longer side at most ``max_side`` (cv2.INTER_AREA, as frames are scaled); proposals and
    features are computed on them. The masks stay at the photo's size (``native_size``), where they are
    scored (at the evaluator's size) and where ``omama match`` writes its output.
    """
    images = {v: load_photo(photos[v], pair, v) for v in (EGO, EXO)}
    native = {CAMS[v]: [int(images[v].shape[0]), int(images[v].shape[1])] for v in (EGO, EXO)}
    work = {CAMS[v]: list(working_size(images[v].shape, max_side)) for v in (EGO, EXO)}
    annotations, annotated, skipped = {}, {}, []
    for obj, files in masks.items():
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
        annotations[obj] = {CAMS[v]: {str(FRAME): encode_rle(mask)} for v, mask in m.items() if mask.any()}
        annotated[obj] = {CAMS[EGO]: [FRAME], CAMS[EXO]: [FRAME]}
    if not annotations:
        where = sorted({str(p.parent) for files in masks.values() for p in files.values()})
        raise PhotoPairError(f"pair {pair!r}: no object has a non-empty exo mask in {', '.join(where) or 'its masks'}")
    with atomic_path(images_out) as tmp:
        for v in (EGO, EXO):
            (tmp / CAMS[v]).mkdir(parents=True)
            h, w = work[CAMS[v]]
            rgb = images[v] if (h, w) == images[v].shape[:2] else cv2.resize(images[v], (w, h), interpolation=cv2.INTER_AREA)
            Image.fromarray(rgb).save(tmp / CAMS[v] / frame_file(FRAME), quality=jpeg_quality)
    annotation = {
        "take_uid": pair,
        "take_name": pair,
        "scenario": SCENARIO,
        "parent_scenario": "photos",
        "ego_cam": CAMS[EGO],
        "exo_cams": [CAMS[EXO]],
        "native_size": native,
        "image_size": work,
        "subsample_idx": [FRAME],
        "masks": annotations,
        "annotated_frames": annotated,
        "skipped": skipped,
    }
    write_json(annotation_out, annotation)
    log.info(
        "pair %s: %d objects (%d absent in ego), %d skipped; working size %s (photos %s)",
        pair,
        len(annotations),
        sum(CAMS[EGO] not in v for v in annotations.values()),
        len(skipped),
        work,
        native,
    )
    return annotation
