"""The synthetic dataset writer: takes rendered into the Ego-Exo4D layout.

Annotation masks are the per-pixel solid ids at the video's size.

Absences, as in Ego-Exo4D: an object leaves the ego view when the head glances away, and an exo
view when it lies outside that camera's (off-centre, narrower) field of view or behind the
screen at the table's far edge. Some takes (``empty_takes``) have an empty ``object_masks``.

Visibility: an object counts as visible in a camera at an annotated frame when at least
``MIN_VISIBLE_PIXELS`` of its pixels are visible; otherwise the frame stays in
``annotated_frames`` with no key in ``annotation`` (the Ego-Exo4D convention).
``visible_fraction`` = visible pixels / pixels of the object rendered alone in the same view
(0 when it would cover no pixel); parts outside the image count in neither.

Videos: every frame of the 30 fps videos is rendered, but only the annotated frames (0, 30,
...) at full size; the frames between them, which nothing downstream reads, are rendered at
``DRAFT_SCALE`` and upscaled (this keeps the default dataset's generation to seconds).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from omama.config import kind_setting
from omama.data.masks import encode_lzstring
from omama.io import atomic_path, write_json, write_parquet
from omama.synthetic.scene import EGO_CAM, FPS, MIN_VISIBLE_PIXELS, TASKS, Take

log = logging.getLogger(__name__)

VISIBILITY_COLUMNS = ["take_uid", "object", "camera", "frame", "visible_fraction", "area"]
DRAFT_SCALE = 0.5  # frames between annotated ones only fill the video: rendered at half size, upscaled
PARENT_TASK = "Health"
UNIVERSITY = "omama-synthetic"


def _uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _write_take(take: Take, folder: Path) -> tuple[dict, list[dict]]:
    """Render the videos of one take into ``folder``; return its object_masks and visibility rows."""
    folder.mkdir(parents=True, exist_ok=True)
    masks: dict = {o.name: {} for o in take.objects}
    rows = []
    for cam in take.cameras:
        h, w = take.size(cam)
        path = folder / ("aria01_214-1.mp4" if cam == EGO_CAM else f"{cam}.mp4")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cv2.VideoWriter (mp4v) cannot write {path}")
        for o in take.objects:
            masks[o.name][cam] = {
                "annotation": {},
                "annotation_metadata": {},
                "annotation_fps": 1,
                "annotated_frames": list(take.annotated),
            }
        for f in range(take.frames):
            if f % FPS:
                draft = take.render(cam, f, DRAFT_SCALE).rgb()
                writer.write(cv2.resize(draft[..., ::-1], (w, h), interpolation=cv2.INTER_LINEAR))
                continue
            frame = take.render(cam, f)
            writer.write(np.ascontiguousarray(frame.rgb()[..., ::-1]))
            for i, o in enumerate(take.objects):
                mask = frame.ids == i + 1
                area, alone = int(mask.sum()), frame.alone[i + 1]
                rows.append(
                    {
                        "object": o.name,
                        "camera": cam,
                        "frame": f,
                        "visible_fraction": area / alone if alone else 0.0,
                        "area": area,
                    }
                )
                if area >= MIN_VISIBLE_PIXELS:
                    masks[o.name][cam]["annotation"][str(f)] = {
                        "width": w,
                        "height": h,
                        "encodedMask": encode_lzstring(mask),
                        "intSegClicks": {},
                    }
        writer.release()
    return masks, rows


def withhold(object_masks: dict, view: str) -> dict:
    """``object_masks`` with the masks of ``view`` (ego or exo) withheld: its camera entries keep their
    annotated frames but lose their ``annotation``, as in a test release scored by the challenge server."""
    return {
        obj: {
            cam: ({k: v for k, v in ann.items() if k != "annotation"} if (EGO_CAM == cam) == (view == "ego") else ann)
            for cam, ann in per_cam.items()
        }
        for obj, per_cam in object_masks.items()
    }


OFFICIAL_TAKES = {"train": 821, "val": 201, "test": 295}  # the challenge's split.json (SegSwap, O-MaMa's code)


def split_counts(cfg: dict) -> tuple[int, int, int]:
    """(annotated takes, of which val, of which test): ``official_scale`` x the official split's take counts (each at
    least 1), else ``takes`` shared out by ``val_fraction`` and ``test_fraction``."""
    scale = cfg["official_scale"]
    if scale is not None:
        train, val, test = (max(1, round(scale * OFFICIAL_TAKES[s])) for s in ("train", "val", "test"))
        return train + val + test, val, test
    n = int(cfg["takes"])
    n_val = min(n, round(n * float(cfg["val_fraction"])))
    return n, n_val, min(n - n_val, round(n * float(cfg["test_fraction"])))


def generate_dataset(out_dir, cfg: dict, workers: int = 1) -> Path:
    """Write a synthetic dataset in the Ego-Exo4D layout into ``out_dir`` (replaced atomically).

    ``cfg`` is ``config["synthetic"]``: seed, takes, seconds, exo_cameras, ego_size,
    exo_size [h, w], objects, val_fraction, test_fraction, withhold_test, empty_takes, official_scale. Same ``cfg``
    -> byte-identical JSON and masks. The annotated takes are shared out between
    relations_{train,val,test}.json; the test takes are drawn from those not in val with a stream
    of their own, so the val takes (and every take's uid and pixels) do not depend on
    ``test_fraction``. ``withhold_test`` (ego, exo or none) writes the test takes as the challenge
    has at times released them: that view's camera entries keep their ``annotated_frames`` but have
    no ``annotation`` (its masks are scored by the server). After the ``takes`` annotated takes come
    ``empty_takes`` takes (in the train split) with videos but an empty ``object_masks`` (nobody
    annotated them), which the take index must count and skip.
    Beside the official files, ``visibility.parquet`` holds one row per (take, object,
    camera, annotated frame): take_uid, object, camera, frame, visible_fraction, area.
    """
    cfg = kind_setting("datasets", "synthetic", "synthetic", cfg)  # the schema's defaults
    out_dir = Path(out_dir)
    rng = np.random.default_rng([int(cfg["seed"]), 1_000_003])
    (n, n_val, n_test), empty = split_counts(cfg), int(cfg["empty_takes"])
    val = set(rng.permutation(n)[:n_val].tolist())
    rest = [i for i in range(n) if i not in val]
    order = np.random.default_rng([int(cfg["seed"]), 1_000_033]).permutation(len(rest))
    test = {rest[j] for j in order[:n_test]}
    takes, splits, visibility = [], {"train": {}, "val": {}, "test": {}}, []
    scenes = [Take(cfg, i) for i in range(n + empty)]
    names = [f"synthetic_{TASKS[take.task]}_{i:03d}_1" for i, take in enumerate(scenes)]
    with atomic_path(out_dir) as tmp, ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        # Each take is rendered on its own (in ``workers`` processes), the rest in take order: the same bytes.
        folders = [tmp / "takes" / name / "frame_aligned_videos" for name in names]
        rendered = (pool.map if pool else map)(_write_take, scenes, folders)
        for i, (take, name, (masks, rows)) in enumerate(
            tqdm(zip(scenes, names, rendered), total=n + empty, desc="synthetic takes", mininterval=5)
        ):
            uid = _uid(rng)
            area = {cam: sum(r["area"] for r in rows if r["camera"] == cam) for cam in take.exo}
            videos = {"aria01": {"rgb": {"relative_path": "frame_aligned_videos/aria01_214-1.mp4", "clip_uid": _uid(rng)}}}
            videos |= {
                cam: {"0": {"relative_path": f"frame_aligned_videos/{cam}.mp4", "clip_uid": _uid(rng)}} for cam in take.exo
            }
            takes.append(
                {
                    "take_uid": uid,
                    "take_name": name,
                    "root_dir": f"takes/{name}",
                    "task_name": take.task,
                    "parent_task_name": PARENT_TASK,
                    "university_name": UNIVERSITY,
                    "capture_uid": _uid(rng),
                    "duration_sec": float(take.frames / FPS),
                    "best_exo": max(area, key=area.get),
                    "frame_aligned_videos": videos,
                }
            )
            split = "val" if i in val else "test" if i in test else "train"
            if split == "test" and cfg["withhold_test"] != "none":
                masks = withhold(masks, cfg["withhold_test"])
            splits[split][uid] = {
                "take_name": name,
                "scenario": take.task,
                "object_names": {"annotation": [], "annotation_metadata": {}, "annotation_fps": FPS},
                "object_masks": masks if i < n else {},
            }
            if i < n:
                visibility += [{"take_uid": uid, **r} for r in rows]
            log.info(
                "take %d/%d %s: %d objects%s, %d cameras, %d frames",
                i + 1,
                n + empty,
                name,
                len(take.objects),
                "" if i < n else " (object_masks left empty)",
                len(take.cameras),
                take.frames,
            )
        write_json(tmp / "takes.json", takes)
        for split, ann in splits.items():
            write_json(tmp / "annotations" / f"relations_{split}.json", {"annotations": ann})
        write_parquet(tmp / "visibility.parquet", pd.DataFrame(visibility, columns=VISIBILITY_COLUMNS))
    return out_dir
