"""Real photo pairs from the Middlebury motorcycle stereo pair: masks carried by the true
disparity with z-buffering, written in the photo-pair layout (the motorcycle dataset kind)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import default_config, run_snakemake, tiny_config
from PIL import Image
from weights_fixtures import SHA

from omama.data.photos import convert_pair, list_pairs
from omama.data.stereo import PAIRS, load_motorcycle, segment_objects, warp_labels, write_motorcycle_pairs
from omama.features.store import FeatureStore
from omama.layout import Layout


def test_nearer_surface_wins_and_hidden_parts_disappear():
    """Background (label 1, disparity 2) behind a square (label 2, disparity 6): in the right view the
    square moves 6 px left, covers background, and the background it hid on the left is absent."""
    h, w = 10, 30
    labels = np.ones((h, w), np.int32)
    disp = np.full((h, w), 2.0)
    labels[3:7, 12:18] = 2
    disp[3:7, 12:18] = 6.0
    disp[0, 0] = np.nan  # unknown disparity lands nowhere
    right = warp_labels(labels, disp)
    assert (right[3:7, 6:12] == 2).all() and (right == 2).sum() == 4 * 6
    # right columns 12..15 would show the background from left columns 14..17, hidden there by the square
    assert (right[3:7, 12:16] == 0).all()
    assert (right[0:3, 0:28] == 1).all() and (right[:, 28:] == 0).all()  # last columns: seen only by the right camera
    # sub-pixel disparity: floor and ceil both receive the label, so a stretched surface has no holes
    frac = warp_labels(np.ones((1, 8), np.int32), np.linspace(1.0, 2.5, 8)[None])
    assert (frac[0, :6] == 1).all()


def test_disparity_is_the_left_views_and_masks_follow_the_photos():
    left, right, disp = load_motorcycle(300)
    assert left.shape == right.shape == (202, 300, 3) and np.isnan(disp).any()
    labels = segment_objects(left, disp, 8)
    assert 5 <= labels.max() <= 8
    ys, xs = np.nonzero(labels > 0)
    ok = np.isfinite(disp[ys, xs])
    ys, xs = ys[ok], xs[ok]
    xr = np.round(xs - disp[ys, xs]).astype(int)
    inside = (xr >= 0) & (xr < 300)
    matched = np.abs(left[ys, xs].astype(float) - right[ys, np.clip(xr, 0, 299)].astype(float))[inside].mean()
    unmoved = np.abs(left[ys, xs].astype(float) - right[ys, xs].astype(float)).mean()
    assert matched < 12 and unmoved > 2 * matched, (matched, unmoved)
    warped = warp_labels(labels, disp)
    for i in range(1, labels.max() + 1):
        a, b = (labels == i).sum(), (warped == i).sum()
        assert 0.6 * a < b < 1.2 * a, f"segment {i}: {a} px on the left, {b} on the right"


def test_pairs_are_a_photo_pair_folder(tmp_path):
    out = tmp_path / "photos"
    names = write_motorcycle_pairs(out, width=200, objects=6, views=0, seed=0)  # the rectified pairs only
    assert names == [p[0] for p in PAIRS] and sorted(names) == list_pairs(out)
    full = convert_pair(
        pair_dir=out / "left-right", annotation_out=tmp_path / "lr" / "annotation.json", images_out=tmp_path / "lr" / "images"
    )
    assert full["native_size"] == {"aria_ego": [135, 200], "exo": [135, 200]}
    assert all("aria_ego" in m for m in full["masks"].values()), "every object is visible in the full right photo"
    crop = convert_pair(
        pair_dir=out / "left-right-crop-a",
        annotation_out=tmp_path / "c" / "annotation.json",
        images_out=tmp_path / "c" / "images",
    )
    assert crop["native_size"]["aria_ego"] == [135, 124]
    objects = sorted(full["masks"])
    ego = {o: np.asarray(Image.open(out / "left-right" / "masks" / f"{o}.ego.png")) > 0 for o in objects}
    for o in objects:  # the crop's ego mask is the full one's first 124 columns; absent when nothing is left
        part = ego[o][:, :124]
        path = out / "left-right-crop-a" / "masks" / f"{o}.ego.png"
        assert path.exists() == part.any()
        if part.any():
            np.testing.assert_array_equal(np.asarray(Image.open(path)) > 0, part)
    # the reverse direction uses the right photo as exo and the left as ego
    exo_rl = np.asarray(Image.open(out / "right-left" / "exo.png"))
    np.testing.assert_array_equal(exo_rl, np.asarray(Image.open(out / "left-right" / "ego.png")))


def test_moved_camera_views_carry_the_masks_with_the_photo(tmp_path):
    """A moved-camera pair shows the other view turned and closer; every object's ego mask covers the
    same surface (same colours) as in that view, never the black outside the photo; seeded."""
    out = tmp_path / "photos"
    names = write_motorcycle_pairs(out, width=200, objects=6, views=2, seed=3)
    assert names == [p[0] for p in PAIRS] + ["view-0", "view-1"]

    def masks(pair, view):
        return {p.name.split(".")[0]: np.asarray(Image.open(p)) > 0 for p in (out / pair / "masks").glob(f"*.{view}.png")}

    for view, rectified in (("view-0", "left-right"), ("view-1", "right-left")):  # same exo photo, same ego camera
        ego = np.asarray(Image.open(out / view / "ego.png")).astype(float)
        assert ego.shape == (135, 135, 3)
        np.testing.assert_array_equal(Image.open(out / view / "exo.png"), Image.open(out / rectified / "exo.png"))
        source = np.asarray(Image.open(out / rectified / "ego.png")).astype(float)
        outside = ego.sum(-1) == 0
        moved, full = masks(view, "ego"), masks(rectified, "ego")
        assert len(moved) >= 2 and outside.any(), "the view is a turned, partial look at the photo"
        for obj, m in moved.items():
            assert (m & outside).mean() < 0.02 * m.mean() + 1e-9, f"{view} {obj}: mask on the black outside the photo"
            if m.sum() >= 100:  # the surface's colour survives resampling
                diff = np.abs(ego[m].mean(0) - source[full[obj]].mean(0)).max()
                assert diff < 20, f"{view} {obj}: mean colour differs by {diff:.1f}"
        assert not any(np.array_equal(m, full[o][: m.shape[0], : m.shape[1]]) for o, m in moved.items())
    again = tmp_path / "again"
    write_motorcycle_pairs(again, width=200, objects=6, views=2, seed=3)
    np.testing.assert_array_equal(Image.open(again / "view-1" / "ego.png"), Image.open(out / "view-1" / "ego.png"))
    other = tmp_path / "other"
    write_motorcycle_pairs(other, width=200, objects=6, views=1, seed=4)
    assert not np.array_equal(
        np.asarray(Image.open(other / "view-0" / "ego.png")), np.asarray(Image.open(out / "view-0" / "ego.png"))
    )


@pytest.mark.slow
def test_pretrained_backbone_and_motorcycle_pairs_end_to_end(fetched, tmp_path):
    """The workflow with the pretrained MobileNetV2 (weights from the session's torch cache) scores
    the motorcycle pairs: own results tree, reference predictors, own report section."""
    home, _ = fetched
    cfg = tiny_config(torch_home=str(home))
    cfg["backbones"] = {
        "mobilenet-v2": {
            **default_config()["backbones"]["mobilenet-v2"],
            "ego_grid": [8, 8],
            "exo_grid": [6, 10],
            "batch_size": 4,
        }
    }
    # the motorcycle pairs (was robustness.motorcycle) are a dataset of their own, evaluated through evaluate_on;
    # no generated photo pairs
    cfg["datasets"] = {
        "tabletop": cfg["datasets"]["tabletop"],
        "motorcycle": {"kind": "motorcycle", "width": 160, "objects": 5, "views": 1},
    }
    cfg["experiments"] = {
        k: {**cfg["experiments"][k], "backbone": "mobilenet-v2", "evaluate_on": ["tabletop", "motorcycle"]}
        for k in ("untrained", "trained-frame")
    }
    cfg["evaluate"]["references"] = ["random", "largest"]
    run_snakemake(tmp_path, cfg)
    r = Layout(str(tmp_path / "results"))
    d = r.data("motorcycle")
    record = json.loads(open(r.weights("mobilenet-v2")).read())
    assert record["source"] == "cache" and record["sha256"] == SHA
    assert list_pairs(d.source()) == sorted([p[0] for p in PAIRS] + ["view-0"])
    store = FeatureStore(d.features("mobilenet-v2", "left-right"))
    assert store.attrs["backbone"]["weights_sha256"] == SHA and store.attrs["backbone"]["channels"] == 96
    page = open(r.report()).read()
    assert '<section id="motorcycle">' in page and "Dataset motorcycle (motorcycle), scored only" in page
    assert "cut from one real rectified stereo pair (Middlebury 2014" in page and 'id="photos"' not in page
    for e in ("untrained", "trained-frame"):
        m = json.loads(open(r.result("metrics.json", e, "motorcycle", "test")).read())
        assert m["n_total"] >= 4 * 2 and f"{m['iou']:.4f}" in page
    for ref in ("random", "largest"):  # on a dataset it is only evaluated on, every row is a test row: split "all"
        m = json.loads(open(d.reference("metrics.json", "all", "classical", "test", ref)).read())
        assert f"{m['iou']:.4f}" in page and f"reference: {ref} (classical)" in page
