"""Feature stores: layout, values, errors that name the frame, atomicity under SIGKILL, the rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr

from omama.backbones import load_backbone
from omama.features import FeatureStore, FrameError, extract_features
from omama.proposals import load_proposals

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0}
CFG = {"kind": "dinov2", "weights": "untrained", "tiny": TINY, "ego_grid": [4, 4], "exo_grid": [3, 5],
       "batch_size": 2, "dtype": "float16", "compressor": "zstd", "compression_level": 3}
EGO, EXO = "aria01_214-1", ["cam01", "cam02"]


def write_take(root: Path, frames=(0, 30, 60, 90, 120), take: str = "take-1") -> Path:
    """A take in the extract stage's layout: annotation.json + images/{cam}/{frame}.jpg."""
    rng = np.random.default_rng(0)
    sizes = {EGO: (48, 48), **{c: (36, 64) for c in EXO}}
    for cam, (h, w) in sizes.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        for f in frames:
            cv2.imwrite(str(root / "images" / cam / f"{f}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    ann = {"take_uid": take, "take_name": "synthetic_take", "ego_cam": EGO, "exo_cams": EXO,
           "image_size": {c: list(s) for c, s in sizes.items()}, "subsample_idx": list(frames), "masks": {}}
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_store_layout_attributes_and_values(tmp_path):
    take = write_take(tmp_path / "frames")
    out = tmp_path / "features" / "take-1.zarr"
    extract_features(take / "annotation.json", take / "images", out, CFG)
    group = zarr.open_group(out, mode="r")
    assert sorted(group.array_keys()) == sorted([EGO, *EXO])
    ego, exo = group[EGO], group["cam01"]
    assert ego.shape == (5, 32, 4, 4) and exo.shape == (5, 32, 3, 5)
    assert ego.chunks == (1, 32, 4, 4) and ego.shards == (5, 32, 4, 4)
    assert ego.dtype == np.float16 and type(ego.compressors[0]).__name__ == "ZstdCodec"
    assert len([p for p in (out / EGO).rglob("*") if p.is_file()]) == 2  # metadata + one shard file
    a = group.attrs
    assert a["complete"] is True and a["take_uid"] == "take-1" and a["frames"] == [0, 30, 60, 90, 120]
    assert a["backbone"]["untrained"] is True and a["backbone"]["implementation"] == "transformers"
    assert a["backbone"]["input_size"] == {"ego": [56, 56], "exo": [42, 70]} and a["dtype"] == "float16"
    assert a["backbone"]["normalisation"]["mean"] == [0.485, 0.456, 0.406]

    store = FeatureStore(out)
    assert store.frames("cam02") == [0, 30, 60, 90, 120] and store.view(EGO) == "ego"
    bb = load_backbone(CFG)
    for cam, view in [(EGO, "ego"), ("cam02", "exo")]:
        direct = bb.features([rgb(take / "images" / cam / "90.jpg")], view)[0].numpy()
        got = store.read(cam, 90)
        assert got.dtype == np.float32 and got.shape == direct.shape
        np.testing.assert_allclose(got, direct, rtol=2e-3, atol=2e-3)  # float16 rounding
    both = store.read_many("cam01", [120, 0])
    np.testing.assert_array_equal(both[0], store.read("cam01", 120))
    with pytest.raises(KeyError, match="frames \\[45\\] of camera 'cam01'"):
        store.read("cam01", 45)


def test_float32_uncompressed_and_small_shards(tmp_path):
    take = write_take(tmp_path / "frames")
    out = tmp_path / "t.zarr"
    extract_features(take / "annotation.json", take / "images", out, {**CFG, "dtype": "float32", "compressor": "none"},
                     shard_frames=3)  # batches of 2 straddle shards of 3
    arr = zarr.open_group(out, mode="r")["cam01"]
    assert arr.dtype == np.float32 and arr.shards == (3, 32, 3, 5) and arr.compressors == ()
    bb, store = load_backbone(CFG), FeatureStore(out)
    for frame in (60, 90, 120):
        direct = bb.features([rgb(take / "images" / "cam01" / f"{frame}.jpg")], "exo")[0].numpy()
        np.testing.assert_allclose(store.read("cam01", frame), direct, rtol=1e-5, atol=1e-5)


def test_store_records_the_resize_mode_and_nearest_changes_the_features(tmp_path):
    take = write_take(tmp_path / "frames", frames=(0, 30))  # 48x48 / 36x64 frames, inputs 56x56 / 42x70
    extract_features(take / "annotation.json", take / "images", tmp_path / "b.zarr", {**CFG, "dtype": "float32"})
    extract_features(take / "annotation.json", take / "images", tmp_path / "n.zarr",
                     {**CFG, "dtype": "float32", "resize": "nearest"})
    b, n = FeatureStore(tmp_path / "b.zarr"), FeatureStore(tmp_path / "n.zarr")
    assert b.attrs["backbone"]["resize"] == "bilinear" and n.attrs["backbone"]["resize"] == "nearest"
    image = rgb(take / "images" / "cam01" / "30.jpg")
    direct = load_backbone({**CFG, "resize": "nearest"}).features([image], "exo")[0].numpy()
    np.testing.assert_allclose(n.read("cam01", 30), direct, rtol=1e-5, atol=1e-5)
    assert not np.allclose(n.read("cam01", 30), b.read("cam01", 30), atol=1e-3)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_bad_frame_names_take_camera_frame(tmp_path, damage):
    take = write_take(tmp_path / "frames")
    jpg = take / "images" / "cam02" / "60.jpg"
    if damage == "missing":
        jpg.unlink()
    elif damage == "garbage":
        jpg.write_bytes(b"this is not a jpeg")
    else:
        jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    out = tmp_path / "out" / "take-1.zarr"
    with pytest.raises(FrameError, match="take 'take-1', camera 'cam02', frame 60"):
        extract_features(take / "annotation.json", take / "images", out, CFG)
    assert not out.exists() and not list((tmp_path / "out").glob("*"))


def test_killed_extraction_leaves_nothing_that_looks_complete(tmp_path):
    take = write_take(tmp_path / "frames", frames=tuple(range(0, 300, 30)))
    out = tmp_path / "out" / "take-1.zarr"
    script = textwrap.dedent(f"""
        import time
        import torch
        from omama.backbones import Backbone
        from omama.features import extract_features

        class SlowPatches(torch.nn.Conv2d):
            def forward(self, x):
                time.sleep(0.3)
                return super().forward(x)

        grids, sizes = {{"ego": (4, 4), "exo": (3, 5)}}, {{"ego": (56, 56), "exo": (42, 70)}}
        bb = Backbone(SlowPatches(3, 8, 14, 14), 8, 14, grids, sizes, {{"kind": "test"}})
        extract_features({str(take / 'annotation.json')!r}, {str(take / 'images')!r}, {str(out)!r},
                         {CFG!r}, backbone=bb)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "out").glob(f".tmp-*/take-1.zarr/{EGO}/zarr.json")):
            assert proc.poll() is None and time.time() < deadline, "extraction ended before it could be killed"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        FeatureStore(out)
    (partial,) = (tmp_path / "out").glob(".tmp-*/take-1.zarr")
    with pytest.raises(ValueError, match="incomplete feature store"):
        FeatureStore(partial)
    extract_features(take / "annotation.json", take / "images", out, CFG)  # the re-run completes and tidies up
    assert FeatureStore(out).frames("cam02") == list(range(0, 300, 30))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["take-1.zarr"]


@pytest.mark.slow
def test_rules_write_store_and_proposals(tmp_path):
    from conftest import run_snakemake, tiny_config

    cfg = tiny_config()
    cfg["backbones"]["tiny-dinov2"].update(ego_grid=[4, 4], exo_grid=[3, 5], tiny=TINY)
    write_take(tmp_path / "results" / "frames" / "take-1")
    run_snakemake(tmp_path, cfg, "results/features/tiny-dinov2/take-1.zarr", "results/proposals/classical/take-1.parquet",
                  "--allowed-rules", "features", "proposals")
    assert sorted(load_proposals(tmp_path / "results" / "proposals" / "classical" / "take-1.parquet")) == [0, 30, 60, 90, 120]
    store = FeatureStore(tmp_path / "results" / "features" / "tiny-dinov2" / "take-1.zarr")
    assert store.frames(EGO) == [0, 30, 60, 90, 120] and store.attrs["backbone"]["channels"] == 32
    assert store.attrs["backbone_name"] == "tiny-dinov2"
    assert (tmp_path / "results" / "logs" / "features" / "tiny-dinov2" / "take-1.log").exists()
    assert (tmp_path / "results" / "benchmarks" / "features" / "tiny-dinov2" / "take-1.tsv").exists()
