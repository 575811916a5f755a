"""Exo->ego pairs: one row per (take, object, exo camera, frame) with an exo mask."""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from omama.io import read_json, write_json, write_parquet
from omama.masks import rle_area

COLUMNS = ["take_uid", "take_name", "scenario", "parent_scenario", "annotation_split", "object", "label",
           "ego_cam", "exo_cam", "frame", "ego_present", "exo_area", "ego_area"]
NOT_IN_EGO = "exo mask at a frame not annotated in the ego camera"
MASK_SKIPPED = "mask skipped at extraction (listed in annotation.json)"
EMPTY_EXO = "empty exo mask (no source object to match)"


def object_label(name: str) -> str:
    """The object's name without its "_<index>" suffix ("test tube_0" -> "test tube")."""
    return re.sub(r"_\d+$", "", name)


def take_pairs(annotation: dict, annotation_split: str) -> tuple[list[dict], Counter]:
    """Pairs of one take's annotation.json, and the counts of exo masks left out (by reason).

    A pair needs the frame to be in the ego camera's annotated frames: otherwise nobody looked
    at the ego view and "no ego mask" would be a false "absent". It also needs a non-empty exo
    mask: an empty one gives the model nothing to describe, so it is no query.
    """
    rows, skipped = [], Counter()
    ego = annotation["ego_cam"]
    for obj, per_cam in sorted(annotation["masks"].items()):
        ego_masks = per_cam.get(ego, {})
        ego_frames = set(annotation["annotated_frames"].get(obj, {}).get(ego, []))
        for exo in annotation["exo_cams"]:
            for key, rle in sorted(per_cam.get(exo, {}).items(), key=lambda kv: int(kv[0])):
                frame = int(key)
                if frame not in ego_frames:
                    skipped[NOT_IN_EGO] += 1
                    continue
                exo_area = rle_area(rle)
                if exo_area == 0:
                    skipped[EMPTY_EXO] += 1
                    continue
                ego_rle = ego_masks.get(key)
                rows.append({
                    "take_uid": annotation["take_uid"], "take_name": annotation["take_name"],
                    "scenario": annotation["scenario"], "parent_scenario": annotation["parent_scenario"],
                    "annotation_split": annotation_split, "object": obj, "label": object_label(obj),
                    "ego_cam": ego, "exo_cam": exo, "frame": frame, "ego_present": ego_rle is not None,
                    "exo_area": exo_area, "ego_area": rle_area(ego_rle) if ego_rle is not None else 0,
                })
    return rows, skipped


def build_pairs(annotation_paths: list[str], takes_index: str) -> tuple[pd.DataFrame, dict]:
    """All takes' pairs (sorted, typed) and a summary with the counts of what was left out."""
    splits = {r["take_uid"]: r["annotation_split"] for r in read_json(takes_index, "take index")}
    rows, skipped = [], Counter({NOT_IN_EGO: 0, MASK_SKIPPED: 0, EMPTY_EXO: 0})
    for path in sorted(annotation_paths):
        annotation = read_json(path, "annotation")
        take_rows, take_skipped = take_pairs(annotation, splits[annotation["take_uid"]])
        rows += take_rows
        skipped.update(take_skipped)
        skipped[MASK_SKIPPED] += len(annotation.get("skipped", []))
    df = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"frame": "int64", "ego_present": "bool", "exo_area": "int64", "ego_area": "int64"})
    df = df.sort_values(["take_uid", "object", "exo_cam", "frame"], kind="stable").reset_index(drop=True)
    summary = {
        "pairs": len(df), "takes": int(df["take_uid"].nunique()), "objects": int(df.groupby("take_uid")["object"].nunique().sum()),
        "labels": int(df["label"].nunique()), "ego_present": int(df["ego_present"].sum()),
        "ego_absent": int((~df["ego_present"]).sum()),
        # An empty ego mask is a mask: present, as the official evaluator counts it (its key exists).
        "ego_present_empty_mask": int((df["ego_present"] & (df["ego_area"] == 0)).sum()),
        "skipped": dict(sorted(skipped.items())),
    }
    return df, summary


def write_pairs(annotation_paths: list[str], takes_index: str, pairs_out: str, summary_out: str) -> dict:
    """Build the pairs and write them (parquet) and their summary (JSON); returns the summary."""
    df, summary = build_pairs(annotation_paths, takes_index)
    write_parquet(pairs_out, df)
    write_json(summary_out, summary, indent=1)
    return summary
