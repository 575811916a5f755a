"""Per take: decode only the needed frames of every camera (streaming) and the take's masks.

Writes ``images/{cam}/{frame}.jpg`` at the processed size and ``annotation.json`` with plain
COCO RLE masks at their native size. Peak memory holds one frame, whatever the take's length.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import Counter
from pathlib import Path

import cv2
from tqdm import tqdm

from omama.data import mp4
from omama.data.masks import MaskDecodeError, lzstring_to_rle
from omama.data.takes import frame_int, is_ego
from omama.io import atomic_path, remove_abandoned, where, write_image, write_json
from omama.layout import frame_file

log = logging.getLogger(__name__)

FULL_RES_EGO = 1408  # full-resolution Aria frames; the 448-px part and synthetic takes are smaller
AUTO_SCALE = {"ego": 0.5, "exo": 0.25}


class VideoError(RuntimeError):
    """A video is unreadable or lacks a frame; the message names take, camera and frame."""


def video_size(path: str | os.PathLike, take: str, cam: str) -> tuple[int, int]:
    """(height, width) of a video as its container declares it."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open video {path} for {where(take, cam=cam)}")
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        cap.release()
    if h <= 0 or w <= 0:
        raise VideoError(f"video {path} reports no frame size for {where(take, cam=cam)}")
    return h, w


def check_complete(path: str | os.PathLike, take: str, cam: str) -> None:
    """Stop on a video shorter than its container declares (a cut download): the decoder would
    turn the frames cut off into damaged images and only say so on stderr."""
    try:
        frame_ends = mp4.video_frame_ends(path)
        need = max([end for _, _, end in mp4.top_level(path)] + frame_ends, default=0)
    except (ValueError, struct.error) as e:
        raise VideoError(f"malformed MP4 index in video {path} for {where(take, cam=cam)}: {e}") from e
    size = os.path.getsize(path)
    if need > size:
        cut = next((k for k, end in enumerate(frame_ends) if end > size), None)
        what = where(take, cam=cam) if cut is None else f"{where(take, cam=cam, frame=cut)} and after (decoding order)"
        raise VideoError(
            f"video {path} is truncated: it has {size} bytes, its container declares {need}; "
            f"the data of {what} is missing (re-download it)"
        )


def read_frames(path: str | os.PathLike, frames: list[int], take: str, cam: str):
    """Yield (frame, BGR image) for the sorted ``frames``, grabbing past the others undecoded."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open video {path} for {where(take, cam=cam)}")
    try:
        pos = 0  # index of the next frame grab() returns
        for frame in frames:
            while pos <= frame:
                if not cap.grab():
                    raise VideoError(
                        f"video {path} ends after {pos} frames: missing {where(take, cam=cam, frame=frame)} (truncated video?)"
                    )
                pos += 1
            ok, img = cap.retrieve()
            if not ok or img is None:
                raise VideoError(f"cannot decode {where(take, cam=cam, frame=frame)} of video {path}")
            yield frame, img
    finally:
        cap.release()


def scale_for(setting, view: str, ego_width: int) -> float:
    """Processed/native scale: "auto" halves ego and quarters exo on full-resolution sources."""
    if setting == "auto":
        return AUTO_SCALE[view] if ego_width >= FULL_RES_EGO else 1.0
    return float(setting)


def same_aspect(a: tuple[int, int], b: tuple[int, int], tol: float = 0.01) -> bool:
    """Whether two (h, w) sizes differ only by a uniform scale (e.g. 1408 px masks on 448 px video)."""
    return abs(a[0] * b[1] - a[1] * b[0]) <= tol * max(a[0] * b[1], a[1] * b[0])


def mask_sizes(record: dict, video_sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Per camera, the size its masks are declared at: the most common declared size (of the
    video's aspect) among its masks of the record's frames; ties go to the video's own size,
    then to the larger. Never the first mask's: one bad mask must not reject the good ones."""
    wanted = set(record["frames"])
    counts: dict[str, Counter] = {cam: Counter() for cam in video_sizes}
    for per_cam in record["object_masks"].values():
        for cam, ann in per_cam.items():
            entries = ann.get("annotation") if isinstance(ann, dict) else None
            for key, entry in entries.items() if isinstance(entries, dict) else ():
                try:
                    frame, size = int(key), (int(entry["height"]), int(entry["width"]))
                except (KeyError, TypeError, ValueError):
                    continue  # reported when the mask is decoded
                if frame in wanted and cam in counts and same_aspect(size, video_sizes[cam]):
                    counts[cam][size] += 1
    return {cam: max(c, key=lambda s: (c[s], s == tuple(video_sizes[cam]), s[0] * s[1])) for cam, c in counts.items() if c}


def decode_masks(record: dict, video_sizes: dict[str, tuple[int, int]], skip_bad_masks: bool):
    """Decode a take's LZString masks at their declared size, restricted to the record's frames.

    Returns (masks, annotated_frames, native_size, skipped). A mask that does not decode or
    whose size does not match the camera's video is an error, or with ``skip_bad_masks`` a
    skip listed with its reason and removed from that camera's annotated frames (so it is
    never mistaken for "not visible").
    """
    take = record["take_uid"]
    wanted = set(record["frames"])
    masks, annotated, skipped = {}, {}, []
    native = mask_sizes(record, video_sizes)
    for obj, per_cam in sorted(record["object_masks"].items()):
        for cam, ann in sorted(per_cam.items()):
            ctx = dict(take=take, obj=obj, cam=cam)
            if cam not in video_sizes:
                raise ValueError(f"no video for {where(**ctx)}")
            if not isinstance(ann, dict) or not isinstance(ann.get("annotation", {}), dict):
                raise ValueError(f"malformed annotation for {where(**ctx)}: expected an object with 'annotation'")
            frames = {frame_int(f, **ctx) for f in ann.get("annotated_frames", [])}
            cam_masks = {}
            for key, entry in sorted(ann.get("annotation", {}).items(), key=lambda kv: frame_int(kv[0], **ctx)):
                frame = frame_int(key, **ctx)
                frames.add(frame)
                if frame not in wanted:
                    continue
                try:
                    try:
                        h, w, enc = int(entry["height"]), int(entry["width"]), entry["encodedMask"]
                    except (KeyError, TypeError, ValueError) as e:
                        raise ValueError(f"malformed mask entry for {where(**ctx, frame=frame)}: missing or bad {e}") from e
                    if not same_aspect((h, w), video_sizes[cam]):
                        raise MaskDecodeError(
                            f"mask size {[h, w]} does not match video size {list(video_sizes[cam])} for {where(**ctx, frame=frame)}"
                        )
                    if native[cam] != (h, w):
                        raise MaskDecodeError(
                            f"mask size {[h, w]} differs from the size of most of the camera's masks {list(native[cam])} for {where(**ctx, frame=frame)}"
                        )
                    cam_masks[str(frame)] = lzstring_to_rle(enc, h, w, **ctx, frame=frame)
                except MaskDecodeError as e:
                    if not skip_bad_masks:
                        raise
                    log.warning("skipped: %s", e)
                    skipped.append({"object": obj, "camera": cam, "frame": frame, "reason": str(e)})
                    frames.discard(frame)
            masks.setdefault(obj, {})[cam] = cam_masks
            annotated.setdefault(obj, {})[cam] = sorted(frames & wanted)
    native_size = {cam: list(native.get(cam, size)) for cam, size in video_sizes.items()}
    return masks, annotated, native_size, skipped


def extract_take(
    *,
    record: dict,
    raw_root: str | os.PathLike,
    annotation_out: str | os.PathLike,
    images_out: str | os.PathLike,
    frames_cfg: dict,
) -> dict:
    """Write the processed frames and annotation.json of one take; returns the annotation.

    ``frames_cfg`` is config["frames"]: ego_scale, exo_scale, jpeg_quality, skip_bad_masks.
    """
    take = record["take_uid"]
    cams = [record["ego_cam"], *record["exo_cams"]]
    paths = {cam: Path(raw_root) / record["videos"][cam] for cam in cams}
    sizes = {cam: video_size(paths[cam], take, cam) for cam in cams}
    for cam in cams:
        check_complete(paths[cam], take, cam)
    masks, annotated, native, skipped = decode_masks(record, sizes, bool(frames_cfg["skip_bad_masks"]))
    ego_width = sizes[record["ego_cam"]][1]
    image_size = {}
    for cam in cams:
        s = scale_for(frames_cfg["ego_scale" if is_ego(cam) else "exo_scale"], "ego" if is_ego(cam) else "exo", ego_width)
        h, w = sizes[cam]
        image_size[cam] = [max(1, round(h * s)), max(1, round(w * s))]
    frames = record["frames"]
    remove_abandoned(images_out)  # temporaries of killed runs; those of live concurrent writers stay
    quality = [cv2.IMWRITE_JPEG_QUALITY, int(frames_cfg["jpeg_quality"])]
    with atomic_path(images_out) as tmp:
        with tqdm(total=len(cams) * len(frames), desc=f"extract {take}", mininterval=5) as bar:
            for cam in cams:
                (tmp / cam).mkdir(parents=True)
                h, w = image_size[cam]
                for frame, img in read_frames(paths[cam], frames, take, cam):
                    if img.shape[:2] != tuple(sizes[cam]):
                        raise VideoError(
                            f"decoded frame is {img.shape[:2]}, container says {sizes[cam]} for {where(take, cam=cam, frame=frame)}"
                        )
                    if (h, w) != img.shape[:2]:
                        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                    write_image(tmp / cam / frame_file(frame), img, quality)
                    bar.update()
    annotation = {
        "take_uid": take,
        "take_name": record["take_name"],
        "scenario": record["scenario"],
        "parent_scenario": record["parent_scenario"],
        "ego_cam": record["ego_cam"],
        "exo_cams": record["exo_cams"],
        "native_size": native,
        "image_size": image_size,
        "subsample_idx": frames,
        "masks": masks,
        "annotated_frames": annotated,
        "skipped": skipped,
        # views whose masks the relations file withholds (scored by the challenge server): no mask there means unknown
        **({"withheld": record["withheld"]} if record.get("withheld") else {}),
    }
    write_json(annotation_out, annotation)
    log.info(
        "take %s: %d cameras x %d frames, %d masks, %d skipped",
        take,
        len(cams),
        len(frames),
        sum(len(f) for per_cam in masks.values() for f in per_cam.values()),
        len(skipped),
    )
    return annotation
