"""The synthetic Ego-Exo4D dataset and the synthetic robustness photo pairs."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import cv2
import lzstring
import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake, tiny_config
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from omama.data.masks import encode_lzstring
from omama.synthetic import dataset as synthetic_dataset
from omama.synthetic.dataset import generate_dataset
from omama.synthetic.photos import write_photo_pairs
from omama.synthetic.scene import EGO_CAM, MIN_VISIBLE_PIXELS, TASKS, Take

CFG = {
    "seed": 3,
    "takes": 3,
    "seconds": 2,
    "exo_cameras": 2,
    "ego_size": 64,
    "exo_size": [54, 96],
    "objects": 4,
    "val_fraction": 0.34,
    "empty_takes": 1,
}
SMALL = CFG | {"takes": 2, "seconds": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("syn") / "synthetic", CFG)


def relations(root: Path) -> dict:
    out = {}
    for split in ("train", "val"):
        for uid, take in json.loads((root / f"annotations/relations_{split}.json").read_text())["annotations"].items():
            out[uid] = take | {"split": split}
    return out


def masks_of(root: Path):
    """(take_uid, object, camera, frame, entry) for every annotation entry."""
    for uid, take in relations(root).items():
        for obj, cams in take["object_masks"].items():
            for cam, ann in cams.items():
                for frame, entry in ann["annotation"].items():
                    yield uid, obj, cam, int(frame), entry


def official_decode(entry: dict) -> np.ndarray:
    """The benchmark's recipe, with the real libraries only."""
    counts = lzstring.LZString().decompressFromEncodedURIComponent(entry["encodedMask"])
    rle = {"size": [entry["height"], entry["width"]], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def test_layout_and_fields(dataset):
    takes = json.loads((dataset / "takes.json").read_text())
    rel = relations(dataset)
    assert len(takes) == CFG["takes"] + CFG["empty_takes"] and {t["take_uid"] for t in takes} == set(rel)
    empty = [uid for uid, r in rel.items() if not r["object_masks"]]
    assert len(empty) == CFG["empty_takes"] and rel[empty[0]]["split"] == "train"
    assert {r["split"] for r in rel.values()} == {"train", "val"}
    for t in takes:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", t["take_uid"])
        assert t["root_dir"] == f"takes/{t['take_name']}"
        assert t["parent_task_name"] == "Health" and t["task_name"] in TASKS
        assert t["duration_sec"] == CFG["seconds"]
        for key in ("university_name", "capture_uid", "best_exo"):
            assert t[key]
        videos = t["frame_aligned_videos"]
        assert videos["aria01"]["rgb"]["relative_path"] == "frame_aligned_videos/aria01_214-1.mp4"
        exo = [c for c in videos if c != "aria01"]
        assert exo == [f"cam{i:02d}" for i in range(1, CFG["exo_cameras"] + 1)] and t["best_exo"] in exo
        for streams in videos.values():
            for stream in streams.values():
                assert (dataset / t["root_dir"] / stream["relative_path"]).is_file() and stream["clip_uid"]
        r = rel[t["take_uid"]]
        assert r["take_name"] == t["take_name"] and r["scenario"] == t["task_name"]
        assert r["object_names"]["annotation_fps"] == 30
        if t["take_uid"] in empty:
            continue
        assert len(r["object_masks"]) == CFG["objects"]
        for cams in r["object_masks"].values():
            assert sorted(cams) == sorted([EGO_CAM, *exo])
            assert sum("aria" in c for c in cams) == 1
            for ann in cams.values():
                assert ann["annotated_frames"] == [0, 30]
                assert set(ann["annotation"]) <= {"0", "30"}


def test_names_include_space_slash_and_same_colour_duplicates(dataset):
    rel = relations(dataset)
    names = {o for t in rel.values() for o in t["object_masks"]}
    assert any(" " in n for n in names) and any("/" in n for n in names)
    assert all(re.fullmatch(r".+_\d+", n) for n in names)
    duplicates = 0
    for i in range(CFG["takes"]):
        take = Take(CFG, i)
        bowls = [o for o in take.objects if o.kind == "bowl"]
        if len(bowls) == 2:
            assert {o.name for o in bowls} == {"bowl_0", "bowl_1"}
            assert bowls[0].material == bowls[1].material  # same colour and texture
            duplicates += 1
    assert duplicates >= 1


def test_masks_equal_renderer_ids_and_reencode_byte_exact(dataset):
    takes = {t["take_uid"]: i for i, t in enumerate(json.loads((dataset / "takes.json").read_text()))}
    checked = set()
    for uid, obj, cam, frame, entry in masks_of(dataset):
        mask = official_decode(entry)
        assert mask.shape == (entry["height"], entry["width"])
        assert mask.sum() >= MIN_VISIBLE_PIXELS
        assert encode_lzstring(mask) == entry["encodedMask"]
        if (uid, cam) not in checked:  # one rendered comparison per take and camera
            checked.add((uid, cam))
            take = Take(CFG, takes[uid])
            index = [o.name for o in take.objects].index(obj)
            np.testing.assert_array_equal(mask, take.render(cam, frame).ids == index + 1)
    assert len(checked) == CFG["takes"] * (1 + CFG["exo_cameras"])


def test_absent_objects_are_missing_keys_and_match_visibility(dataset):
    vis = pd.read_parquet(dataset / "visibility.parquet")
    assert list(vis.columns) == ["take_uid", "object", "camera", "frame", "visible_fraction", "area"]
    assert len(vis) == CFG["takes"] * CFG["objects"] * (1 + CFG["exo_cameras"]) * CFG["seconds"]
    present = {(u, o, c, f) for u, o, c, f, _ in masks_of(dataset)}
    rows = {(r.take_uid, r.object, r.camera, r.frame): r.area for r in vis.itertuples()}
    assert present == {k for k, area in rows.items() if area >= MIN_VISIBLE_PIXELS}
    absent_ego = [k for k in rows if k not in present and k[2] == EGO_CAM]
    assert absent_ego, "some object must leave the ego view at an annotated frame"
    assert vis["visible_fraction"].between(0, 1).all()
    assert (vis["visible_fraction"] < 0.7).any() and (vis["visible_fraction"] > 0.99).any()
    partly = vis[(vis["visible_fraction"] > 0) & (vis["visible_fraction"] < 0.7)]
    assert len(partly), "hands or objects must partly occlude some object"


def test_absences_in_both_directions_in_realistic_proportions():
    """Objects leave exo views (out of the field of view, or fully behind the screen) as well as
    the ego view, each in a sizeable minority of the (object, exo camera, frame) triples."""
    cfg = CFG | {"seconds": 4}
    exo_absent = ego_absent = ego_seen = exo_seen = out_of_view = occluded = 0
    for i in range(6):
        take = Take(cfg, i)
        for f in take.annotated:
            frames = {c: take.render(c, f) for c in take.cameras}
            for k in range(1, len(take.objects) + 1):
                ego = (frames[EGO_CAM].ids == k).sum() >= MIN_VISIBLE_PIXELS
                for cam in take.exo:
                    exo = (frames[cam].ids == k).sum() >= MIN_VISIBLE_PIXELS
                    ego_seen += ego
                    exo_seen += exo
                    ego_absent += exo and not ego
                    if ego and not exo:
                        exo_absent += 1
                        out_of_view += frames[cam].alone[k] == 0
                        occluded += frames[cam].alone[k] >= MIN_VISIBLE_PIXELS
    assert out_of_view > 0 and occluded > 0, (out_of_view, occluded)
    assert 0.1 <= exo_absent / ego_seen <= 0.4, (exo_absent, ego_seen)
    assert 0.1 <= ego_absent / exo_seen <= 0.45, (ego_absent, exo_seen)


def test_empty_take_is_counted_and_skipped_by_the_take_index(dataset, tmp_path):
    from omama.data.takes import build_index

    selection = {"scenarios": [], "take_limit": None, "frame_fraction": 1.0, "annotation_splits": ["train", "val"], "seed": 0}
    records = build_index(
        source_root=dataset,
        selection=selection,
        takes_out=tmp_path / "takes.json",
        records_dir=tmp_path / "records",
        summary_out=tmp_path / "summary.json",
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(records) == CFG["takes"]
    assert summary["left_out"] == {"empty object_masks": CFG["empty_takes"]}
    assert [t["reason"] for t in summary["skipped_takes"]] == ["empty object_masks"] * CFG["empty_takes"]


def test_videos_frame_aligned_30fps_native_sizes(dataset):
    take = json.loads((dataset / "takes.json").read_text())[0]
    scene = Take(CFG, 0)
    for cam, streams in take["frame_aligned_videos"].items():
        cap = cv2.VideoCapture(str(dataset / take["root_dir"] / next(iter(streams.values()))["relative_path"]))
        assert cap.get(cv2.CAP_PROP_FPS) == 30
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == CFG["seconds"] * 30
        name = EGO_CAM if cam == "aria01" else cam
        h, w = scene.size(name)
        assert (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))) == (h, w)
        if cam == "aria01":
            assert h == w == CFG["ego_size"]
        else:
            assert [h, w] == CFG["exo_size"] and abs(w / h - 16 / 9) < 0.05
        cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
        ok, bgr = cap.read()
        cap.release()
        assert ok
        decoded = bgr[..., ::-1].astype(float)
        same = np.abs(decoded - scene.render(name, 30).rgb()).mean()
        other = np.abs(decoded - scene.render(name, 0).rgb()).mean()
        assert same < 10 and same < other, (cam, same, other)


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path):
    first, again = (generate_dataset(tmp_path / name, SMALL) for name in ("first", "again"))
    other = generate_dataset(tmp_path / "other", SMALL | {"seed": SMALL["seed"] + 1})
    for rel in ("takes.json", "annotations/relations_train.json", "annotations/relations_val.json"):
        assert (again / rel).read_bytes() == (first / rel).read_bytes()
        assert (other / rel).read_bytes() != (first / rel).read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(again / "visibility.parquet"), pd.read_parquet(first / "visibility.parquet"))


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    """A run killed after its first take leaves nothing that looks like a dataset."""
    calls = []

    def failing(take, folder):
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(take, folder)

    real = synthetic_dataset._write_take
    monkeypatch.setattr(synthetic_dataset, "_write_take", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "synthetic", SMALL)
    assert list(tmp_path.iterdir()) == []


def test_too_many_objects_is_a_named_config_error(tmp_path):
    with pytest.raises(ValueError, match="synthetic.objects"):
        generate_dataset(tmp_path / "synthetic", SMALL | {"objects": 40})
    assert list(tmp_path.iterdir()) == []


def test_photo_pairs_layout(tmp_path):
    out = write_photo_pairs(tmp_path / "photos", n=3, seed=5, exo_size=(54, 96), ego_size=64, jpeg_quality=92)
    pairs = sorted(p.name for p in out.iterdir())
    assert pairs == ["pair_000", "pair_001", "pair_002"]
    portrait = absent = exif = 0
    for name in pairs:
        pair = out / name
        shown = {}
        for view in ("exo", "ego"):
            with Image.open(pair / f"{view}.jpg") as im:
                exif += im.getexif().get(0x0112, 1) != 1
                shown[view] = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
            portrait += shown[view].shape[0] > shown[view].shape[1]
        files = sorted((pair / "masks").iterdir())
        assert files and all(re.fullmatch(r"[^/]+_\d+\.(exo|ego)\.png", f.name) for f in files)
        objects = {f.name.rsplit(".", 2)[0] for f in files}
        for obj in objects:
            assert (pair / "masks" / f"{obj}.exo.png").exists()
            absent += not (pair / "masks" / f"{obj}.ego.png").exists()
        for f in files:
            m = np.asarray(Image.open(f))
            view = f.name.rsplit(".", 2)[1]
            assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}
            assert m.shape == shown[view].shape[:2]
            inside, outside = shown[view][m > 0].mean(0), shown[view][m == 0].mean(0)
            assert np.abs(inside - outside).max() > 5  # the mask covers something that looks different
    assert portrait >= 1 and absent >= 1 and exif == 1


@pytest.mark.slow
def test_rule_prepare_writes_the_synthetic_source(tmp_path):
    from omama.layout import Layout, source_takes

    L = Layout("res")
    D = L.data("tabletop")
    cfg = tiny_config(results="res")
    synthetic = cfg["datasets"]["tabletop"]["synthetic"]
    synthetic.update(takes=2, seconds=2)
    run_snakemake(tmp_path, cfg, D.source())  # a directory output: takes.json, videos, visibility.parquet
    root = tmp_path / D.source()
    n = 2 + synthetic["empty_takes"]
    assert len(json.loads((tmp_path / source_takes(D.source())).read_text())) == n and (tmp_path / D.visibility()).is_file()
    assert len(list((root / "takes").glob("*/frame_aligned_videos/*.mp4"))) == n * (1 + synthetic["exo_cameras"])
    assert (tmp_path / L.log("prepare", "dataset").format(dataset="tabletop")).exists()
    assert (tmp_path / L.benchmark("prepare", "dataset").format(dataset="tabletop")).exists()
    again = run_snakemake(tmp_path, cfg, D.source())
    assert "Nothing to be done" in again.stdout + again.stderr


# ---------------------------------------------------------------------------- reproducibility across CPUs

# Another machine, simulated on this one: OpenBLAS kernels for an old core (no AVX/FMA), numpy without
# its AVX2/FMA3 (X86_V3) loops, torch without AVX2/AVX-512 kernels. Each run is a fresh process.
OTHER_CPU = {"NPY_DISABLE_CPU_FEATURES": "X86_V3", "ATEN_CPU_CAPABILITY": "default"}
if platform.machine() in ("x86_64", "AMD64"):
    OTHER_CPU["OPENBLAS_CORETYPE"] = "Prescott"

RENDER_SCRIPT = """
import hashlib, sys
from omama.synthetic.scene import EGO_CAM, Take
take = Take({"seed": 3, "seconds": 2, "objects": 4, "exo_cameras": 1, "ego_size": 80, "exo_size": [54, 96]}, 0)
h = hashlib.sha256()
for cam in (EGO_CAM, "cam01"):
    for frame in (0, 30, 45):
        for scale in (1.0, 0.5):
            f = take.render(cam, frame, scale)
            for a in (f.colour, f.depth, f.ids, f.rgb()):
                h.update(a.tobytes())
print(h.hexdigest())
"""


def run_python(code: str, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_rendering_is_bit_identical_under_other_cpu_dispatch():
    # before the renderer avoided BLAS products, OPENBLAS_CORETYPE=Prescott changed the colours of frames
    assert run_python(RENDER_SCRIPT, {}) == run_python(RENDER_SCRIPT, OTHER_CPU)


def test_exact_sin_cos_and_dot():
    from omama.synthetic.render import dot, norm, sin_cos

    x = np.random.default_rng(0).uniform(-400, 400, 20000)
    s, c = sin_cos(x)
    assert np.abs(s - np.sin(x)).max() < 5e-16 and np.abs(c - np.cos(x)).max() < 5e-16
    assert all(sin_cos(v) == (s[i], c[i]) for i, v in enumerate(x[:200]))  # scalars: the same bits
    a = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    m = np.random.default_rng(2).normal(size=(3, 3)).astype(np.float32)
    assert dot(a, m).dtype == np.float32 and np.allclose(dot(a, m), a @ m, atol=1e-6)
    assert np.allclose(dot(a, m[0]), a @ m[0], atol=1e-6) and np.allclose(norm(a), np.linalg.norm(a, axis=1), atol=1e-6)


@pytest.mark.slow
def test_early_stages_are_byte_identical_under_other_cpu_dispatch(tmp_path, monkeypatch):
    """prepare -> take_index -> extract -> pairs -> split twice, the second run as if on another CPU:
    synthetic videos and masks, extracted frames, annotation.json, pairs and splits are the same bytes."""
    from omama.layout import Layout

    D = Layout("results").data("tabletop")
    cfg = tiny_config()
    cfg["datasets"]["tabletop"]["synthetic"].update(takes=2, seconds=2)
    targets = [D.split("frame"), D.split("object")]
    run_snakemake(tmp_path / "a", cfg, *targets)
    for k, v in OTHER_CPU.items():
        monkeypatch.setenv(k, v)
    run_snakemake(tmp_path / "b", cfg, *targets)

    def digests(root: Path) -> dict[str, str]:
        r = root / D.root
        files = [p for p in sorted(r.rglob("*")) if p.is_file() and p.parts[len(r.parts)] not in ("logs", "benchmarks")]
        return {str(p.relative_to(r)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert any(k.endswith(".mp4") for k in a) and any(k.endswith(".jpg") for k in a)
    assert any(k.endswith("annotation.json") for k in a) and "pairs.parquet" in a
    assert a == b, sorted(k for k in a if a[k] != b.get(k))
