"""Pairs of both directions: one row per (direction, take, object, exo camera, frame).

exo2ego rows have a (non-empty) exo mask at a frame the ego camera annotated; ego2exo rows a
(non-empty) ego mask at a frame the exo camera annotated (the official ``evaluate_egoexo.py``
rule). ``ego_present`` / ``exo_present`` say whether each view has a mask there.
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from omama.data.masks import rle_area
from omama.direction import Direction
from omama.io import read_json, write_json, write_parquet

COLUMNS = [
    "take_uid",
    "take_name",
    "scenario",
    "parent_scenario",
    "annotation_split",
    "object",
    "label",
    "ego_cam",
    "exo_cam",
    "frame",
    "ego_present",
    "exo_area",
    "ego_area",
    "direction",
    "exo_present",
    "scored",
]
NOT_IN_EGO = "exo mask at a frame not annotated in the ego camera"
MASK_SKIPPED = "mask skipped at extraction (listed in annotation.json)"
EMPTY_EXO = "empty exo mask (no source object to match)"
NOT_IN_EXO = "ego mask at a frame not annotated in the exo camera"
EMPTY_EGO = "empty ego mask (no source object to match)"
SOURCE_WITHHELD = "source masks withheld in the annotations (object x camera pairs)"


def object_label(name: str) -> str:
    """The object's name without its "_<index>" suffix ("test tube_0" -> "test tube")."""
    return re.sub(r"_\d+$", "", name)


# What a direction's pairs leave out: a source mask at a frame the destination camera did not annotate
# (nobody looked there, so "no mask" would be a false "absent"); an empty source mask (nothing to describe).
LEFT_OUT = {"exo2ego": (NOT_IN_EGO, EMPTY_EXO), "ego2exo": (NOT_IN_EXO, EMPTY_EGO)}


def take_pairs(annotation: dict, annotation_split: str, *, direction: str = "exo2ego") -> tuple[list[dict], Counter]:
    """Pairs of one take's annotation.json in ``direction``, and the counts of source masks left out
    (by reason, ``LEFT_OUT``): for each object, exo camera and frame with a non-empty source mask
    (exo->ego: the exo camera's; ego->exo: the ego camera's) that the destination camera annotated.
    The destination mask may be missing: the object is absent there. Where the annotations withhold
    the destination view's masks (``annotation["withheld"]``, a test release scored by the challenge
    server), the rows are predict-only: ``scored`` False, presence unknown (stored as absent), and
    every source frame is kept when the withheld camera lists no annotated frames."""
    d = Direction(direction)
    not_annotated, empty = LEFT_OUT[direction]
    rows, skipped = [], Counter()
    ego = annotation["ego_cam"]
    withheld = set(annotation.get("withheld", []))
    scored = d.dst_view not in withheld
    for obj, per_cam in sorted(annotation["masks"].items()):
        for exo in annotation["exo_cams"]:
            cams = {"ego": ego, "exo": exo}
            src, dst = cams[d.src_view], cams[d.dst_view]
            if d.src_view in withheld:
                skipped[SOURCE_WITHHELD] += 1
                continue
            dst_frames = set(annotation["annotated_frames"].get(obj, {}).get(dst, []))
            dst_masks = per_cam.get(dst, {})
            for key, rle in sorted(per_cam.get(src, {}).items(), key=lambda kv: int(kv[0])):
                frame = int(key)
                if frame not in dst_frames and (scored or dst_frames):
                    skipped[not_annotated] += 1
                    continue
                src_area = rle_area(rle)
                if src_area == 0:
                    skipped[empty] += 1
                    continue
                dst_rle = dst_masks.get(key)
                area = {d.src_view: src_area, d.dst_view: rle_area(dst_rle) if dst_rle is not None else 0}
                present = {d.src_view: True, d.dst_view: dst_rle is not None}
                rows.append(
                    {
                        "take_uid": annotation["take_uid"],
                        "take_name": annotation["take_name"],
                        "scenario": annotation["scenario"],
                        "parent_scenario": annotation["parent_scenario"],
                        "annotation_split": annotation_split,
                        "object": obj,
                        "label": object_label(obj),
                        "ego_cam": ego,
                        "exo_cam": exo,
                        "frame": frame,
                        "ego_present": present["ego"],
                        "exo_area": area["exo"],
                        "ego_area": area["ego"],
                        "direction": direction,
                        "exo_present": present["exo"],
                        "scored": scored,
                    }
                )
    return rows, skipped


def build_pairs(annotation_paths: list[str], takes_index: str) -> tuple[pd.DataFrame, dict]:
    """All takes' pairs of both directions (sorted, typed) and a summary with the counts of what was
    left out: exo2ego's at the top level, ego2exo's under ``"ego2exo"``."""
    splits = {r["take_uid"]: r["annotation_split"] for r in read_json(takes_index, "take index")}
    rows, skipped = [], Counter({NOT_IN_EGO: 0, MASK_SKIPPED: 0, EMPTY_EXO: 0})
    skipped_e2x = Counter({NOT_IN_EXO: 0, EMPTY_EGO: 0})
    for path in sorted(annotation_paths):
        annotation = read_json(path, "annotation")
        split = splits[annotation["take_uid"]]
        take_rows, take_skipped = take_pairs(annotation, split, direction="exo2ego")
        e2x_rows, e2x_skipped = take_pairs(annotation, split, direction="ego2exo")
        rows += take_rows + e2x_rows
        skipped.update(take_skipped)
        skipped_e2x.update(e2x_skipped)
        skipped[MASK_SKIPPED] += len(annotation.get("skipped", []))
    df = pd.DataFrame(rows, columns=COLUMNS).astype(
        {
            "frame": "int64",
            "ego_present": "bool",
            "exo_area": "int64",
            "ego_area": "int64",
            "exo_present": "bool",
            "scored": "bool",
        }
    )
    df = df.sort_values(
        ["direction", "take_uid", "object", "exo_cam", "frame"], ascending=[False, True, True, True, True], kind="stable"
    ).reset_index(drop=True)
    e2x = df[df["direction"] == "ego2exo"]
    df_all, df = df, df[df["direction"] == "exo2ego"]
    summary = {
        "pairs": len(df),
        "takes": int(df["take_uid"].nunique()),
        "objects": int(df.groupby("take_uid")["object"].nunique().sum()),
        "labels": int(df["label"].nunique()),
        "ego_present": int((df["scored"] & df["ego_present"]).sum()),
        "ego_absent": int((df["scored"] & ~df["ego_present"]).sum()),
        "predict_only": int((~df["scored"]).sum()),  # destination masks withheld: scored by the challenge server
        # An empty ego mask is a mask: present, as the official evaluator counts it (its key exists).
        "ego_present_empty_mask": int((df["ego_present"] & (df["ego_area"] == 0)).sum()),
        "skipped": dict(sorted(skipped.items())),
        "ego2exo": {
            "pairs": len(e2x),
            "exo_present": int((e2x["scored"] & e2x["exo_present"]).sum()),
            "exo_absent": int((e2x["scored"] & ~e2x["exo_present"]).sum()),
            "predict_only": int((~e2x["scored"]).sum()),
            "exo_present_empty_mask": int((e2x["exo_present"] & (e2x["exo_area"] == 0)).sum()),
            "skipped": dict(sorted(skipped_e2x.items())),
        },
    }
    return df_all, summary


def write_pairs(*, annotation_paths: list[str], takes_index: str, pairs_out: str, summary_out: str) -> dict:
    """Build the pairs and write them (parquet) and their summary (JSON); returns the summary."""
    df, summary = build_pairs(annotation_paths, takes_index)
    write_parquet(pairs_out, df)
    write_json(summary_out, summary, indent=1)
    return summary
