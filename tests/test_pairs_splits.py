"""Pairs (only frames annotated in the ego camera) and split guarantees."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from data_fixtures import FRAMES, index

from omama.data.extract import extract_take
from omama.data.pairs import COLUMNS, NOT_IN_EGO, take_pairs, write_pairs
from omama.data.splits import SUBSETS, split_pairs, write_split


@pytest.fixture(scope="module")
def extracted(synthetic_source, tmp_path_factory):
    """(annotation paths, take index path) of every tiny take."""
    out = tmp_path_factory.mktemp("extracted")
    records = index(synthetic_source, out)
    paths = []
    for r in records:
        extract_take(
            record=r,
            raw_root=synthetic_source,
            annotation_out=out / r["take_uid"] / "annotation.json",
            images_out=out / r["take_uid"] / "images",
            frames_cfg=FRAMES,
        )
        paths.append(str(out / r["take_uid"] / "annotation.json"))
    return paths, str(out / "index/takes.json")


def test_pairs_table(extracted, tmp_path):
    paths, takes = extracted
    summary = write_pairs(
        annotation_paths=paths, takes_index=takes, pairs_out=tmp_path / "pairs.parquet", summary_out=tmp_path / "pairs.json"
    )
    both = pd.read_parquet(tmp_path / "pairs.parquet")
    assert list(both.columns) == COLUMNS and set(both["direction"]) == {"exo2ego", "ego2exo"}
    df, e2x = (both[both["direction"] == d] for d in ("exo2ego", "ego2exo"))
    assert len(df) == summary["pairs"] > 0 and len(e2x) == summary["ego2exo"]["pairs"] > 0
    assert json.loads((tmp_path / "pairs.json").read_text()) == summary
    for path in paths:
        a = json.loads(open(path).read())
        for r in e2x[e2x["take_uid"] == a["take_uid"]].itertuples():  # ego2exo: an ego mask at an exo-annotated frame
            assert str(r.frame) in a["masks"][r.object][r.ego_cam] and r.ego_area > 0
            assert r.frame in a["annotated_frames"][r.object][r.exo_cam]
            assert r.exo_present == (str(r.frame) in a["masks"][r.object][r.exo_cam]) == (r.exo_area > 0)
        rows = df[df["take_uid"] == a["take_uid"]]
        n_exo_masks = sum(len(per_cam.get(c, {})) for per_cam in a["masks"].values() for c in a["exo_cams"])
        assert len(rows) == n_exo_masks
        for r in rows.itertuples():
            assert str(r.frame) in a["masks"][r.object][r.exo_cam]
            assert r.ego_present == (str(r.frame) in a["masks"][r.object][r.ego_cam])
            assert (r.ego_area > 0) == r.ego_present and r.exo_area > 0
            assert r.label == r.object.rsplit("_", 1)[0]
    assert df["ego_present"].any() and not df["ego_present"].all()
    assert e2x["exo_present"].any() and not e2x["exo_present"].all()  # the synthetic takes have exo absences


def test_exo_masks_at_frames_not_annotated_in_ego_are_counted_not_paired(extracted):
    a = json.loads(open(extracted[0][0]).read())
    obj = next(o for o, per_cam in sorted(a["masks"].items()) if any(per_cam[c] for c in a["exo_cams"]))
    frame = int(next(f for c in a["exo_cams"] for f in a["masks"][obj][c]))
    all_rows, _ = take_pairs(a, "train")
    b = copy.deepcopy(a)
    b["annotated_frames"][obj][a["ego_cam"]].remove(frame)
    rows, skipped = take_pairs(b, "train")
    dropped = [r for r in all_rows if r["object"] == obj and r["frame"] == frame]
    assert dropped and len(rows) == len(all_rows) - len(dropped) and skipped[NOT_IN_EGO] == len(dropped)
    assert not any(r["object"] == obj and r["frame"] == frame for r in rows)


def fake_pairs(seed: int = 0, takes: int = 30) -> pd.DataFrame:
    """A pairs table big enough to check split ratios: takes x frames x objects x 2 exo cameras."""
    rng = np.random.default_rng(seed)
    labels = [f"thing{i}" for i in range(25)]
    rows = []
    for t in range(takes):
        objs = rng.choice(labels, size=4, replace=False)
        for frame in range(0, 30 * int(rng.integers(3, 9)), 30):
            for k, label in enumerate(objs):
                for cam in ("cam01", "cam02"):
                    rows.append(
                        {
                            "take_uid": f"t{t}",
                            "take_name": f"take{t}",
                            "scenario": f"s{t % 3}",
                            "parent_scenario": "p",
                            "annotation_split": "train",
                            "object": f"{label}_{k}",
                            "label": label,
                            "ego_cam": "aria01_214-1",
                            "exo_cam": cam,
                            "frame": frame,
                            "ego_present": bool(rng.random() < 0.7),
                            "exo_area": 10,
                            "ego_area": 5,
                            "direction": "exo2ego",
                            "exo_present": True,
                            "scored": True,
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.mark.parametrize(
    "strategy,keys,tol", [("frame", ["take_uid", "frame"], 0.03), ("take", ["take_uid"], 0.06), ("object", ["label"], 0.1)]
)
def test_split_guarantees(strategy, keys, tol):
    pairs = fake_pairs()
    ratios = [0.7, 0.15, 0.15]
    df = split_pairs(pairs, strategy, ratios, seed=3)
    assert len(df) == len(pairs) and set(df["split"]) == set(SUBSETS)
    assert (df.groupby(keys)["split"].nunique() == 1).all()  # no group in two splits
    share = df["split"].value_counts(normalize=True)
    assert all(abs(share[s] - r) <= tol for s, r in zip(SUBSETS, ratios)), share.to_dict()
    assert df.equals(split_pairs(pairs, strategy, ratios, seed=3))
    assert not df["split"].equals(split_pairs(pairs, strategy, ratios, seed=4)["split"])


def test_object_split_has_no_shared_label_and_diagnostics_show_it(tmp_path):
    pairs = fake_pairs()
    pairs.to_parquet(tmp_path / "pairs.parquet")
    ratios = [0.6, 0.2, 0.2]
    obj = write_split(
        pairs_path=tmp_path / "pairs.parquet",
        strategy="object",
        ratios=ratios,
        seed=0,
        split_out=tmp_path / "object.parquet",
        diagnostics_out=tmp_path / "object.json",
    )
    assert obj["label_overlap"] == {"train-val": [], "train-test": [], "val-test": []}
    assert sum(c["pairs"] for c in obj["counts"].values()) == len(pairs)
    assert json.loads((tmp_path / "object.json").read_text()) == obj
    frame = write_split(
        pairs_path=tmp_path / "pairs.parquet",
        strategy="frame",
        ratios=ratios,
        seed=0,
        split_out=tmp_path / "frame.parquet",
        diagnostics_out=tmp_path / "frame.json",
    )
    assert frame["label_overlap"]["train-test"]  # frame-level splits share labels: what the diagnostics are for
    assert set(frame["per_scenario"]) == {"s0", "s1", "s2"}
    assert sum(v["present"] + v["absent"] for v in frame["per_ego_presence"].values()) == len(pairs)
    df = pd.read_parquet(tmp_path / "frame.parquet")
    assert list(df.columns) == [*COLUMNS, "split"]


def test_every_split_gets_a_group_when_there_are_enough():
    pairs = fake_pairs(takes=3)
    df = split_pairs(pairs, "take", [0.7, 0.15, 0.15], seed=0)
    assert set(df["split"]) == set(SUBSETS) and (df.groupby("take_uid")["split"].nunique() == 1).all()
