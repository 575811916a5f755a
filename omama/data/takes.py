"""The take index: one streaming pass over takes.json and relations_{split}.json.

Writes one record per selected take (``records_dir/{take_uid}.json``, with that take's raw
LZString ``object_masks``), the lean list of records (``takes.json``, without the masks) and
a summary counting every take left out and why.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

import ijson
import numpy as np

from omama.data.sources import manifest_sizes
from omama.io import atomic_path, read_json, safe_name, where, write_json

log = logging.getLogger(__name__)

ANNOTATION_SPLITS = ("train", "val", "test")  # Ego-Exo4D annotation files: annotations/relations_{split}.json
DOWNSCALED = "downscaled/448"
# Takes left out before their videos are fetched (reasons in index/summary.json and the report's skip table).
NOT_IN_RELEASE = "not in the release (no videos in the part's manifest)"
MISSING_LOCALLY = "videos missing in the local copy"
EXCLUDED = "excluded by selection.exclude_takes"


def is_ego(cam: str) -> bool:
    return "aria" in cam


def frame_int(key, **context) -> int:
    try:
        return int(key)
    except (TypeError, ValueError) as e:
        raise ValueError(f"malformed frame key {key!r} for {where(**context)}") from e


def cameras(take_uid: str, object_masks: dict) -> tuple[str, list[str]]:
    """(ego camera, sorted exo cameras) of a take's object_masks; exactly one ego camera."""
    for obj, per_cam in object_masks.items():
        if not isinstance(per_cam, dict):
            raise ValueError(f"malformed object_masks entry (not an object) for {where(take_uid, obj)}")
    cams = {safe_name(cam, "camera", f"take {take_uid!r}") for per_cam in object_masks.values() for cam in per_cam}
    egos = sorted(c for c in cams if is_ego(c))
    if len(egos) != 1:
        raise ValueError(f"take {take_uid!r}: expected exactly one ego (aria) camera, found {egos}")
    return egos[0], sorted(cams - set(egos))


def withheld_views(take_uid: str, object_masks: dict, path) -> list[str]:
    """The views (ego, exo) whose masks a relations file withholds for this take: every camera entry of
    the view keeps its ``annotated_frames`` but has no ``annotation`` (a test release scored by the
    challenge server). ``annotation: {}`` is not withholding: that camera looked and never saw the object.
    A view with masks for some entries and none for others is an error naming the take."""
    out = []
    for view in ("ego", "exo"):
        has = {
            "annotation" in ann
            for per_cam in object_masks.values()
            for cam, ann in per_cam.items()
            if is_ego(cam) == (view == "ego") and isinstance(ann, dict)
        }
        if has == {True, False}:
            raise ValueError(
                f"take {take_uid!r} in {path}: some {view} camera entries have masks ('annotation') and others "
                f"withhold them; a take's {view} masks are either all given or all withheld"
            )
        if has == {False}:
            out.append(view)
    return out


def missing_videos(take_uid: str, videos: dict[str, str], root: Path, sizes: dict | None) -> str | None:
    """Why the source lacks a take's videos, or None: with a release manifest (``sizes``: take uid ->
    relative path -> size), a video it does not list; otherwise a video file missing under ``root``."""
    if sizes is not None:
        listed = sizes.get(take_uid, {})
        return None if all(p in listed for p in videos.values()) else NOT_IN_RELEASE
    return None if all((root / p).is_file() for p in videos.values()) else MISSING_LOCALLY


def annotated_frames(take_uid: str, object_masks: dict) -> list[int]:
    """Every frame any camera of any object was annotated at (annotated_frames or a mask key)."""
    frames = set()
    for obj, per_cam in object_masks.items():
        for cam, ann in per_cam.items():
            if not isinstance(ann, dict):
                raise ValueError(f"malformed annotation (not an object) for {where(take_uid, obj, cam)}")
            for f in ann.get("annotated_frames", []):
                frames.add(frame_int(f, take=take_uid, obj=obj, cam=cam))
            for f in ann.get("annotation", {}):
                frames.add(frame_int(f, take=take_uid, obj=obj, cam=cam))
    return sorted(frames)


def video_paths(take: dict, cams: list[str], source_root: str | os.PathLike | None, downscaled: bool | None) -> dict[str, str]:
    """camera -> video path relative to the source root, from takes.json's frame_aligned_videos.

    ``downscaled``: True/False picks the 448-px or full-resolution file; None (a local
    folder) picks the full-resolution file when present under ``source_root``, else the 448-px one.
    """
    by_stem = {}
    for streams in take.get("frame_aligned_videos", {}).values():
        for stream in streams.values() if isinstance(streams, dict) else ():
            rel = stream.get("relative_path") if isinstance(stream, dict) else None
            if rel:
                path = PurePosixPath(take["root_dir"]) / rel
                if path.is_absolute() or ".." in path.parts:
                    raise ValueError(
                        f"take {take['take_uid']!r}: video path {str(path)!r} (root_dir + relative_path in "
                        f"takes.json) leaves the take's folder: it must be relative, without '..'"
                    )
                by_stem[PurePosixPath(rel).stem] = path
    out = {}
    for cam in cams:
        if cam not in by_stem:
            raise KeyError(cam)
        full = by_stem[cam]
        small = full.parent / DOWNSCALED / full.name
        if downscaled is None:
            downscaled = not (Path(source_root) / full).is_file() and (Path(source_root) / small).is_file()
        out[cam] = str(small if downscaled else full)
    return out


def choose_frames(take_uid: str, frames: list[int], fraction: float, seed: int) -> list[int]:
    """A seeded share of a take's frames (at least one), independent of the other takes."""
    if fraction >= 1.0 or not frames:
        return frames
    rng = np.random.default_rng([seed, zlib.crc32(take_uid.encode())])
    k = max(1, round(fraction * len(frames)))
    return sorted(int(f) for f in rng.choice(frames, size=k, replace=False))


def take_rank(take_uid: str, seed: int) -> int:
    """Seeded order of takes for take_limit: the same take keeps its rank whatever else is selected."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{take_uid}".encode()).digest()[:8], "big")


def scenario_selected(scenarios: list[str], *names: str) -> bool:
    wanted = {s.lower() for s in scenarios}
    return not wanted or any(n and n.lower() in wanted for n in names)


JSON_TYPE = {
    "start_map": "an object",
    "start_array": "an array",
    "string": "a string",
    "number": "a number",
    "integer": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def stream_annotations(path: str | os.PathLike):
    """(take_uid, annotation) of relations_{split}.json, one take at a time.

    A file without a top-level "annotations" object is an error (not zero takes).
    """
    last, n = None, 0
    try:
        with open(path, "rb") as f:
            for uid, ann in ijson.kvitems(f, "annotations", use_float=True):
                yield uid, ann
                last, n = uid, n + 1
        if n == 0:
            check_relations_layout(path)
    except (ijson.JSONError, ijson.IncompleteJSONError) as e:
        after = f"after take {last!r}" if n else "before the first take"
        raise ValueError(f"malformed relations file {path} ({after}): {e}") from e


def check_relations_layout(path: str | os.PathLike) -> None:
    """Raise unless the file is an object whose "annotations" is an object (read up to that key)."""
    with open(path, "rb") as f:
        events = ijson.parse(f)
        _, event, _ = next(events, ("", "nothing", None))
        if event != "start_map":
            raise ValueError(
                f"relations file {path}: top level is {JSON_TYPE.get(event, event)}, expected an object "
                f"with 'annotations' (take uid -> annotation)"
            )
        keys = []
        for prefix, event, value in events:
            if prefix == "" and event == "map_key":
                keys.append(value)
                if value == "annotations":
                    _, event, _ = next(events)
                    if event != "start_map":
                        raise ValueError(
                            f"relations file {path}: 'annotations' is {JSON_TYPE.get(event, event)}, "
                            f"expected an object (take uid -> annotation)"
                        )
                    return
    raise ValueError(
        f"relations file {path}: no top-level 'annotations' (its keys: {keys}); is it an Ego-Exo4D relations_<split>.json?"
    )


def load_takes(path: str | os.PathLike) -> dict[str, dict]:
    """takes.json as take_uid -> take: a list of objects, each with its own take_uid."""
    takes = read_json(path, "takes.json")
    if not isinstance(takes, list):
        found = f"an object with keys {sorted(takes)[:10]}" if isinstance(takes, dict) else f"{type(takes).__name__}"
        raise ValueError(f"takes.json {path}: expected a list of takes, found {found}")
    out, where_in = {}, {}
    for i, take in enumerate(takes):
        if not isinstance(take, dict):
            raise ValueError(f"takes.json {path}: take #{i} is not an object")
        if "take_uid" not in take:
            raise ValueError(f"takes.json {path}: take #{i} (take_name {take.get('take_name')!r}) has no 'take_uid'")
        uid = take["take_uid"]
        if uid in out:
            raise ValueError(f"takes.json {path}: take_uid {uid!r} is listed twice (takes #{where_in[uid]} and #{i})")
        out[uid], where_in[uid] = take, i
    return out


def take_fields(take: dict, path, *keys: str) -> None:
    """Raise naming takes.json, the take and the key when one of ``keys`` is missing or not a string."""
    for key in keys:
        if not isinstance(take.get(key), str):
            state = "has no" if key not in take else "has a non-string"
            raise ValueError(f"takes.json {path}: take {take['take_uid']!r} {state} {key!r}")


def write_if_changed(path: Path, obj) -> None:
    """Write JSON atomically unless the file already holds exactly it (keeps mtimes stable)."""
    data = json.dumps(obj).encode()
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def build_index(
    *,
    source_root: str | os.PathLike,
    selection: dict,
    takes_out: str | os.PathLike,
    records_dir: str | os.PathLike,
    summary_out: str | os.PathLike,
    downscaled: bool | None = None,
    manifest: str | os.PathLike | None = None,
) -> list[dict]:
    """Select takes and write their records; returns the lean records written to ``takes_out``.

    ``selection`` is config["selection"]: scenarios (parent or fine-grained names),
    annotation_splits, exclude_takes, take_limit (seeded), frame_fraction (seeded), seed. A take
    whose videos the source does not have (``manifest`` of the release, else the files under
    ``source_root``) is left out and counted, never a failed job.
    """
    from omama.config import kind_setting

    selection = kind_setting("datasets", "local", "selection", selection)  # the schema's defaults
    root = Path(source_root)
    meta = load_takes(root / "takes.json")
    sizes = manifest_sizes(manifest) if manifest else None
    excluded = set(selection["exclude_takes"])
    seed = int(selection["seed"])
    limit = selection["take_limit"]
    scenarios = selection["scenarios"]
    skipped, reasons = [], Counter()
    origin: dict[str, Path] = {}  # take uid -> the relations file listing it
    kept: list = []  # (uid, lean record); with take_limit, a heap of (-rank, uid, record)
    seen = 0
    records_dir = Path(records_dir)

    def skip(uid, reason, name=None):
        reasons[reason] += 1
        skipped.append({"take_uid": uid, "take_name": name, "reason": reason})

    for split in selection["annotation_splits"]:
        path = root / "annotations" / f"relations_{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"missing annotations: {path}")
        for uid, ann in stream_annotations(path):
            seen += 1
            safe_name(uid, "take_uid", f"in {path}")
            if uid in origin:
                raise ValueError(
                    f"take {uid!r} is listed twice in {path}"
                    if origin[uid] == path
                    else f"take {uid!r} is in both {origin[uid]} and {path}: a take belongs to one "
                    f"annotation split; remove it from one of the files"
                )
            origin[uid] = path
            if not isinstance(ann, dict):
                raise ValueError(f"malformed annotation of take {uid!r} in {path}: expected an object")
            take = meta.get(uid)
            name = ann.get("take_name")
            if uid in excluded:
                skip(uid, EXCLUDED, name)
                continue
            if take is None:
                skip(uid, "not in takes.json", name)
                continue
            if not scenario_selected(scenarios, ann.get("scenario"), take.get("task_name"), take.get("parent_task_name")):
                reasons["scenario not selected"] += 1
                continue
            take_fields(take, root / "takes.json", "take_name", "root_dir")
            masks = ann.get("object_masks") or {}
            if not isinstance(masks, dict):
                raise ValueError(
                    f"malformed annotation of take {uid!r} in {path}: 'object_masks' is "
                    f"{type(masks).__name__}, expected an object (object name -> camera -> annotation)"
                )
            if not masks:
                skip(uid, "empty object_masks", take["take_name"])
                continue
            ego, exos = cameras(uid, masks)
            withheld = withheld_views(uid, masks, path)
            try:
                videos = video_paths(take, [ego, *exos], root, downscaled)
            except KeyError as e:
                skip(uid, f"camera {e.args[0]} has no video in takes.json", take["take_name"])
                continue
            missing = missing_videos(uid, videos, root, sizes)
            if missing:
                skip(uid, missing, take["take_name"])
                continue
            frames = choose_frames(uid, annotated_frames(uid, masks), float(selection["frame_fraction"]), seed)
            take_sizes = (sizes or {}).get(uid, {})
            record = {
                "take_uid": uid,
                "take_name": take["take_name"],
                "scenario": ann.get("scenario") or take.get("task_name"),
                "parent_scenario": take.get("parent_task_name"),
                "annotation_split": split,
                "ego_cam": ego,
                "exo_cams": exos,
                "videos": videos,
                "video_sizes": {c: take_sizes.get(p) for c, p in videos.items()},
                "frames": frames,
                "object_masks": masks,
                **({"withheld": withheld} if withheld else {}),
            }
            if limit is None:
                write_if_changed(records_dir / f"{uid}.json", record)
                kept.append((uid, lean(record)))
            else:  # keep the take_limit best-ranked takes: a heap whose top is the worst kept
                item = (-take_rank(uid, seed), uid, record)
                if len(kept) < limit:
                    heapq.heappush(kept, item)
                    continue
                reasons["beyond take_limit"] += 1
                if item > kept[0]:
                    heapq.heapreplace(kept, item)
    if limit is not None:
        for _, uid, record in kept:
            write_if_changed(records_dir / f"{uid}.json", record)
        kept = [(uid, lean(record)) for _, uid, record in kept]
    records = [r for _, r in sorted(kept, key=lambda x: x[0])]
    if not records:
        raise ValueError(f"no take selected from {root} (selection {selection}; left out: {dict(reasons)})")
    write_index(records, reasons, skipped, root=root, seen=seen, takes_out=takes_out, summary_out=summary_out)
    log.info("selected %d of %d takes; left out %s", len(records), seen, dict(reasons))
    return records


def write_index(records: list[dict], reasons: dict, skipped: list[dict], *, root, seen: int, takes_out, summary_out) -> None:
    """A take index (``records``, lean) and its summary: of ``seen`` takes, what was selected and what was left out."""
    summary = {
        "source": str(root),
        "takes_in_annotations": seen,
        "selected": len(records),
        "frames": sum(len(r["frames"]) for r in records),
        "left_out": dict(sorted(reasons.items())),
        "skipped_takes": skipped,
    }
    write_json(summary_out, summary, indent=1)
    write_json(takes_out, records, indent=1)


def lean(record: dict) -> dict:
    """A record without its masks (what takes.json lists), plus its object count."""
    out = {k: v for k, v in record.items() if k != "object_masks"}
    out["n_objects"] = len(record["object_masks"])
    return out
