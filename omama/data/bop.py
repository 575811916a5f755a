"""BOP scenewise datasets (the format HANDAL ships in) read as takes of image pairs.

The format (thodan/bop_toolkit: docs/bop_datasets_format.md, bop_toolkit_lib/dataset_params.py,
scripts/calc_gt_info.py)::

    <root>/<split>/<scene>/rgb/<im_id:06d>.png|jpg     (or gray/; HANDAL's images are .jpg)
                          mask_visib/<im_id:06d>_<gt_id:06d>.png   visible part of the silhouette, 0/255
                          mask/<im_id:06d>_<gt_id:06d>.png         whole silhouette (optional)
                          scene_gt.json       {im_id: [{obj_id, cam_R_m2c, cam_t_m2c}, ...]}
                          scene_gt_info.json  {im_id: [{bbox_obj, bbox_visib, px_count_all, px_count_valid,
                                                        px_count_visib, visib_fract}, ...]}  (same order)
                          scene_camera.json   {im_id: {cam_K, depth_scale, [cam_R_w2c, cam_t_w2c]}}
    <root>/models/models_info.json, <root>/camera.json

``gt_id`` is an annotation's index in its image's list. Image ids are JSON keys (strings of integers).

A scene becomes a take; pair k of its images (an image and the one ``gap`` positions later in the
scene's sorted image ids) becomes the take's frame k, seen by two cameras: ``aria_a`` (the first image;
the official evaluators find the ego camera by "aria" in its name) and ``view_b`` (the second). An
object instance is an object of the take, named ``<label>_<k>``: the label is ``obj_<obj_id:06d>`` (or a
name from the ``labels`` setting) and k counts the earlier annotations of the same obj_id in the image's
list. The k-th instance of an obj_id is taken to be the same physical object in every image of the
scene (BOP's static scenes list their objects in one order); nothing checks it.

Both views are fully annotated: an instance is present in a view when its mask is not empty and its
``visib_fract`` >= ``min_visib_fract``; otherwise it is absent there (no mask, frame still annotated),
also when the image's list does not name it at all.

The settings and their defaults are those of the dataset kind ``bop`` (``omama.data.kinds.Bop.schema``):
HANDAL-X's pairing rule is the default (``gap`` 100, ``stride`` 1: ObjectRelator's
``datasets/build_handal.py``, kept by CCMP's ``SegSwap/build_handal.py``, pairs frame i with frame i + 100 of
the naturally sorted rgb/ files).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omama.data.masks import encode_rle
from omama.io import atomic_path, load_frame, read_json, safe_name, write_image, write_json
from omama.layout import frame_file

log = logging.getLogger(__name__)

CAMS = ("aria_a", "view_b")  # the first and the second image of a pair
PARENT_SCENARIO = "BOP"
IMAGE_FOLDERS = ("rgb", "gray")  # in this order of preference
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_FOLDERS = ("mask_visib", "mask")
UNPAIRED = "image in no pair (gap, stride, max_pairs)"
UNLISTED = "image file not in scene_gt.json"
ABSENT = {
    "unlisted": "not listed in the image's scene_gt.json entry",
    "empty": "empty mask",
    "visib": "visib_fract below min_visib_fract (mask not empty)",
}


class BopError(ValueError):
    """A malformed or incomplete BOP dataset; the message names the file, scene, image and gt index as known."""


def _where(scene=None, image=None, gt=None) -> str:
    """``scene '000001', image 3, gt 0``: where a fault is (given parts only)."""
    parts = [f"scene {scene!r}"] if scene is not None else []
    parts += [f"{k} {v}" for k, v in (("image", image), ("gt", gt)) if v is not None]
    return ", ".join(parts)


def settings(cfg: dict | None = None) -> dict:
    """The reader's settings: a ``datasets.<name>`` entry of kind bop (or some of its keys) with the kind's
    defaults (``omama.data.kinds.Bop.schema``), checked; ``labels`` keys become ints, and each label must be
    its own."""
    from omama.config import entry

    s = entry("datasets", {**(cfg or {}), "kind": "bop"})
    try:
        s["labels"] = {int(k): v for k, v in s["labels"].items()}
    except ValueError as e:
        raise ValueError(f"BOP setting labels must map obj_id (integer) to a name, got {s['labels']!r}") from e
    if len(set(s["labels"].values())) != len(s["labels"]):
        raise ValueError(f"BOP setting labels must give each obj_id its own name, got {s['labels']!r}")
    return s


def synthetic_settings(cfg: dict | None = None) -> dict:
    """The synthetic writer's settings (``synthetic`` of a kind-bop entry, and its ``bop_split``), checked."""
    s = settings({"synthetic": {k: v for k, v in (cfg or {}).items() if k != "split"}})
    return {**s["synthetic"], "split": safe_name((cfg or {}).get("split", s["bop_split"]), "synthetic BOP split")}


def label(obj_id: int, labels: dict) -> str:
    """An object's label: its name in ``labels`` or ``obj_<obj_id:06d>``."""
    return labels.get(obj_id, f"obj_{obj_id:06d}")


def instance_names(obj_ids: list[int], labels: dict) -> list[str]:
    """Object names of one image's annotations, in gt order: ``<label>_<k>``, k counting the earlier
    annotations of the same obj_id."""
    seen: Counter = Counter()
    names = []
    for obj_id in obj_ids:
        names.append(f"{label(obj_id, labels)}_{seen[obj_id]}")
        seen[obj_id] += 1
    return names


# ---------------------------------------------------------------- one scene's files


def _per_image(data, path: Path, scene: str) -> dict[int, list]:
    """{image id: list} of a scene_gt(_info).json, checked to be an object of lists keyed by integers."""
    if not isinstance(data, dict):
        raise BopError(
            f"malformed {path} (scene {scene!r}): expected a JSON object {{image id: [...]}}, got {type(data).__name__}"
        )
    out = {}
    for key, entries in data.items():
        try:
            im = int(key)
        except ValueError:
            raise BopError(f"malformed {path} (scene {scene!r}): image id {key!r} is not an integer") from None
        if not isinstance(entries, list):
            raise BopError(f"malformed {path} ({_where(scene, im)}): expected a list, got {type(entries).__name__}")
        out[im] = entries
    return out


def _number(entry, key: str, types: tuple, path: Path, scene: str, im: int, gt: int):
    """``entry[key]`` if it is a number of ``types`` (not a bool), else a BopError naming file, scene, image, gt."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, types) or isinstance(value, bool):
        raise BopError(f"malformed {path} ({_where(scene, im, gt)}): annotation without a numeric {key!r}: {entry!r}")
    return value


class Scene:
    """One BOP scene's annotations: sorted image ids, obj_ids and visib_fract per image (gt order) and its image
    files ({image id: path}; rgb/ before gray/), all checked when loaded."""

    def __init__(self, scene_dir: str | Path):
        self.dir = Path(scene_dir)
        self.name = self.dir.name
        gt_path, info_path = self.dir / "scene_gt.json", self.dir / "scene_gt_info.json"
        gt = _per_image(read_json(gt_path, f"scene_gt.json of scene {self.name!r}"), gt_path, self.name)
        info = _per_image(read_json(info_path, f"scene_gt_info.json of scene {self.name!r}"), info_path, self.name)
        self.images = sorted(gt)
        if sorted(info) != self.images:
            only = sorted(set(gt) ^ set(info))[:5]
            raise BopError(f"{gt_path} and {info_path} list different images (scene {self.name!r}; e.g. image(s) {only})")
        self.obj_ids, self.visib = {}, {}
        for im in self.images:
            if len(gt[im]) != len(info[im]):
                raise BopError(
                    f"{gt_path} lists {len(gt[im])} annotations but {info_path} {len(info[im])} for {_where(self.name, im)}"
                )
            self.obj_ids[im] = [_number(e, "obj_id", (int,), gt_path, self.name, im, k) for k, e in enumerate(gt[im])]
            self.visib[im] = [
                float(_number(e, "visib_fract", (int, float), info_path, self.name, im, k)) for k, e in enumerate(info[im])
            ]
        self.files: dict[int, Path] = {}
        others = 0  # image files not named by an image id
        for folder in IMAGE_FOLDERS:  # rgb/ before gray/
            for p in sorted((self.dir / folder).iterdir()) if (self.dir / folder).is_dir() else ():
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if p.stem.isdigit():
                    self.files.setdefault(int(p.stem), p)
                else:
                    others += 1
        self.unlisted = others + len(set(self.files) - set(self.images))  # image files scene_gt.json does not list

    def image(self, im: int) -> Path:
        """The image file of ``im``; a BopError naming scene and image when there is none."""
        if im not in self.files:
            raise BopError(
                f"missing image file for {_where(self.name, im)}: no {{{','.join(IMAGE_FOLDERS)}}}/{im:06d}"
                f"{{{','.join(IMAGE_SUFFIXES)}}} in {self.dir}"
            )
        return self.files[im]

    def mask_path(self, folder: str, im: int, gt: int) -> Path:
        return self.dir / folder / f"{im:06d}_{gt:06d}.png"


def list_scenes(root: str | Path, split: str) -> list[str]:
    """The scene folders of ``<root>/<split>`` (sorted); each must hold a scene_gt.json and be a safe name."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise BopError(f"BOP split folder {folder} does not exist")
    scenes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for scene in scenes:
        safe_name(scene, "BOP scene", f"a folder in {folder}")
        if not (folder / scene / "scene_gt.json").is_file():
            raise BopError(f"scene {scene!r} has no scene_gt.json in {folder / scene} (a split without public ground truth?)")
    return scenes


def pair_images(images: list[int], *, gap: int, stride: int, max_pairs: int | None) -> list[tuple[int, int]]:
    """Pairs of sorted image ids: the image at position p with the one at p + ``gap``, for p = 0, ``stride``,
    2 ``stride``, ...; with ``max_pairs``, that many of them spread evenly (the first and the last kept)."""
    pairs = [(images[p], images[p + gap]) for p in range(0, len(images) - gap, stride)]
    if max_pairs is not None and len(pairs) > max_pairs:
        n = len(pairs)
        pairs = [pairs[0]] if max_pairs == 1 else [pairs[k * (n - 1) // (max_pairs - 1)] for k in range(max_pairs)]
    return pairs


def scene_pairs(scene_dir: str | Path, *, gap: int, stride: int, max_pairs: int | None) -> list[tuple[int, int]]:
    """The image pairs of a scene folder (its scene_gt.json's image ids, see ``pair_images``)."""
    return pair_images(Scene(scene_dir).images, gap=gap, stride=stride, max_pairs=max_pairs)


def _size(path: Path, scene: str, im: int) -> list[int]:
    """[height, width] from the image header."""
    try:
        with Image.open(path) as image:
            return [image.height, image.width]
    except OSError as e:
        raise BopError(f"cannot read image {path} ({_where(scene, im)}): {e}") from e


def scene_record(root: str | Path, split: str, scene: str, cfg: dict | None = None) -> dict:
    """The take-index record of one scene (``cfg``: the reader settings, see ``settings``).

    Fields: take_uid ``<split>_<scene>``, take_name, scenario (the dataset name), parent_scenario,
    annotation_split (the split's name before any ``_<type>``: test_primesense -> test), ego_cam, exo_cams,
    frames (pair indices), and for ``convert_scene``: dataset root-relative split and scene, pairs [[first,
    second] image ids], image_size [h, w] (every paired image has it), objects (sorted names), the settings
    it needs (min_visib_fract, masks, labels); counts: images, images_without_objects (paired images whose
    list is empty: frames where no object is), skipped {reason: images}. A scene with fewer images than
    ``gap`` + 1 has no pairs (frames []): the caller counts it as a take left out.
    """
    s = settings(cfg)
    root = Path(root)
    safe_name(split, "BOP split")
    sc = Scene(root / split / scene)
    pairs = pair_images(sc.images, gap=s["gap"], stride=s["stride"], max_pairs=s["max_pairs"])
    paired = sorted({im for pair in pairs for im in pair})
    sizes = {im: _size(sc.image(im), scene, im) for im in paired}
    if len({tuple(v) for v in sizes.values()}) > 1:
        first = paired[0]
        other = next(im for im in paired if sizes[im] != sizes[first])
        raise BopError(
            f"images of different sizes in scene {scene!r} ({sc.dir}): image {first} is {sizes[first]}, image {other} "
            f"{sizes[other]} (height, width); a take's camera has one size"
        )
    skipped = {UNPAIRED: len(sc.images) - len(paired), UNLISTED: sc.unlisted}
    take_uid = safe_name(f"{split}_{scene}", "take uid", f"BOP split {split!r}, scene {scene!r}")
    dataset = s["scenario"] or root.resolve().name
    return {
        "take_uid": take_uid,
        "take_name": f"{dataset}_{take_uid}",
        "scenario": dataset,
        "parent_scenario": PARENT_SCENARIO,
        "annotation_split": split.split("_")[0],
        "ego_cam": CAMS[0],
        "exo_cams": [CAMS[1]],
        "frames": list(range(len(pairs))),
        "split": split,
        "scene": scene,
        "pairs": [list(p) for p in pairs],
        "image_size": sizes[paired[0]] if paired else None,
        "objects": sorted({n for im in paired for n in instance_names(sc.obj_ids[im], s["labels"])}),
        "min_visib_fract": float(s["min_visib_fract"]),
        "masks": s["masks"],
        "labels": {str(k): v for k, v in sorted(s["labels"].items())},
        "images": len(sc.images),
        "images_without_objects": sum(not sc.obj_ids[im] for im in paired),
        "skipped": {k: v for k, v in skipped.items() if v},
    }


def read_mask(path: Path, shape: list[int], scene: str, im: int, gt: int) -> np.ndarray:
    """A BOP mask PNG (0/255; any non-zero pixel is the object) as bool (H, W), checked against ``shape``."""
    if not path.is_file():
        raise BopError(f"missing mask file {path} ({_where(scene, im, gt)})")
    try:
        with Image.open(path) as image:
            m = np.asarray(image if image.mode.startswith("I") else image.convert("L"))
    except OSError as e:
        raise BopError(f"cannot read mask file {path} ({_where(scene, im, gt)}): {e}") from e
    if list(m.shape) != list(shape):
        raise BopError(
            f"mask file {path} is {list(m.shape)} but its image is {list(shape)} (height, width) ({_where(scene, im, gt)})"
        )
    return m > 0


def convert_scene(
    *, record: dict, root: str | Path, annotation_out: str | Path, images_out: str | Path, jpeg_quality: int
) -> dict:
    """Write one scene's take: ``images/<cam>/<frame>.jpg`` (3-channel, native size) and ``annotation.json``
    (the layout of ``omama.data.extract.extract_take``); returns the annotation.

    Masks are plain COCO RLE at native size, only where the object is present; every object keeps both camera
    keys ({} where it is never present) and both cameras list every frame in annotated_frames. Absences are
    counted by reason under ``absent`` ({reason: object-views}); ``skipped`` (masks dropped) stays empty:
    a missing or unreadable mask or image is an error naming it.
    """
    take, scene = record["take_uid"], record["scene"]
    if not record["pairs"]:
        raise BopError(f"take {take!r} (scene {scene!r}) has no image pairs: nothing to convert")
    sc = Scene(Path(root) / record["split"] / scene)
    labels = {int(k): v for k, v in record["labels"].items()}
    shape = record["image_size"]
    masks = {obj: {cam: {} for cam in CAMS} for obj in record["objects"]}
    absent: Counter = Counter()
    with atomic_path(images_out) as tmp:
        for cam in CAMS:
            (tmp / cam).mkdir(parents=True)
        for frame, pair in enumerate(record["pairs"]):
            for cam, im in zip(CAMS, pair):
                rgb = load_frame(sc.image(im), take, cam, frame)  # 3 channels, also from gray/
                if list(rgb.shape[:2]) != shape:
                    raise BopError(f"image {sc.image(im)} is {list(rgb.shape[:2])}, the take's {shape} ({_where(scene, im)})")
                write_image(tmp / cam / frame_file(frame), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                names = instance_names(sc.obj_ids[im], labels)
                absent[ABSENT["unlisted"]] += len(set(masks) - set(names))
                for gt, name in enumerate(names):
                    mask = read_mask(sc.mask_path(record["masks"], im, gt), shape, scene, im, gt)
                    if not mask.any():
                        absent[ABSENT["empty"]] += 1
                    elif sc.visib[im][gt] < record["min_visib_fract"]:
                        absent[ABSENT["visib"]] += 1
                    else:
                        masks[name][cam][str(frame)] = encode_rle(mask)
    frames = record["frames"]
    size = {cam: list(shape) for cam in CAMS}
    annotation = {
        "take_uid": take,
        "take_name": record["take_name"],
        "scenario": record["scenario"],
        "parent_scenario": record["parent_scenario"],
        "ego_cam": CAMS[0],
        "exo_cams": [CAMS[1]],
        "native_size": size,
        "image_size": size,
        "subsample_idx": frames,
        "masks": masks,
        "annotated_frames": {obj: {cam: list(frames) for cam in CAMS} for obj in masks},
        "skipped": [],
        "pairs": record["pairs"],
        "absent": {reason: absent[reason] for reason in ABSENT.values() if absent[reason]},
    }
    write_json(annotation_out, annotation)
    log.info(
        "BOP scene %s: %d pairs, %d objects, %d masks, %s absent",
        take,
        len(frames),
        len(masks),
        sum(len(f) for per_cam in masks.values() for f in per_cam.values()),
        dict(absent) or "none",
    )
    return annotation
