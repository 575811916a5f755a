"""Feature stores: layout, values, errors that name the frame, atomicity under SIGKILL, the rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec

from omama.features.backbones import load_backbone
from omama.features.store import FeatureStore, StoreError, extract_features
from omama.io import FrameError
from omama.proposals.proposers import load_proposals

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0}
CFG = {
    "kind": "dinov2",
    "weights": "untrained",
    "tiny": TINY,
    "ego_grid": [4, 4],
    "exo_grid": [3, 5],
    "batch_size": 2,
    "dtype": "float16",
    "compressor": "zstd",
    "compression_level": 3,
}
EGO, EXO = "aria01_214-1", ["cam01", "cam02"]


def write_take(root: Path, frames=(0, 30, 60, 90, 120), take: str = "take-1") -> Path:
    """A take in the extract stage's layout: annotation.json + images/{cam}/{frame}.jpg."""
    rng = np.random.default_rng(0)
    sizes = {EGO: (48, 48), **{c: (36, 64) for c in EXO}}
    for cam, (h, w) in sizes.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        for f in frames:
            cv2.imwrite(str(root / "images" / cam / f"{f}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    ann = {
        "take_uid": take,
        "take_name": "synthetic_take",
        "ego_cam": EGO,
        "exo_cams": EXO,
        "image_size": {c: list(s) for c, s in sizes.items()},
        "subsample_idx": list(frames),
        "masks": {},
    }
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_store_layout_attributes_and_values(tmp_path):
    take = write_take(tmp_path / "frames")
    out = tmp_path / "features" / "take-1.zarr"
    extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=CFG)
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

    (out / ".snakemake_timestamp").touch()  # what Snakemake leaves in every directory output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opening is quiet: no zarr warning about that file in every job's log
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
    extract_features(
        annotation_json=take / "annotation.json",
        images_dir=take / "images",
        out_store=out,
        backbone_cfg={**CFG, "dtype": "float32", "compressor": "none"},
        shard_frames=3,
    )  # batches of 2 straddle shards of 3
    arr = zarr.open_group(out, mode="r")["cam01"]
    assert arr.dtype == np.float32 and arr.shards == (3, 32, 3, 5) and arr.compressors == (Crc32cCodec(),)
    bb, store = load_backbone(CFG), FeatureStore(out)
    for frame in (60, 90, 120):
        direct = bb.features([rgb(take / "images" / "cam01" / f"{frame}.jpg")], "exo")[0].numpy()
        np.testing.assert_allclose(store.read("cam01", frame), direct, rtol=1e-5, atol=1e-5)


def test_store_records_the_resize_mode_and_nearest_changes_the_features(tmp_path):
    take = write_take(tmp_path / "frames", frames=(0, 30))  # 48x48 / 36x64 frames, inputs 56x56 / 42x70
    extract_features(
        annotation_json=take / "annotation.json",
        images_dir=take / "images",
        out_store=tmp_path / "b.zarr",
        backbone_cfg={**CFG, "dtype": "float32"},
    )
    extract_features(
        annotation_json=take / "annotation.json",
        images_dir=take / "images",
        out_store=tmp_path / "n.zarr",
        backbone_cfg={**CFG, "dtype": "float32", "resize": "nearest"},
    )
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
        extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=CFG)
    assert not out.exists() and not list((tmp_path / "out").glob("*"))


def writer_process(take: Path, out: Path, delay: float = 0.3, cfg: dict = CFG) -> subprocess.Popen:
    """extract_features in a subprocess with a slowed-down network (so it can be raced or killed)."""
    script = textwrap.dedent(f"""
        import time
        import torch
        from omama.features.backbones import Backbone
        from omama.features.store import extract_features

        class SlowPatches(torch.nn.Conv2d):
            def forward(self, x):
                time.sleep({delay})
                return super().forward(x)

        grids, sizes = {{"ego": (4, 4), "exo": (3, 5)}}, {{"ego": (56, 56), "exo": (42, 70)}}
        torch.manual_seed(0)
        bb = Backbone(SlowPatches(3, 8, 14, 14), 8, 14, grids, sizes, {{"kind": "test"}})
        extract_features(annotation_json={str(take / "annotation.json")!r}, images_dir={str(take / "images")!r},
                         out_store={str(out)!r}, backbone_cfg={cfg!r}, backbone=bb)
    """)
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for(pattern_root: Path, pattern: str, procs, timeout: float = 120, count: int = 1) -> None:
    deadline = time.time() + timeout
    while len(list(pattern_root.glob(pattern))) < count:
        assert all(p.poll() is None for p in procs) and time.time() < deadline, "writer ended before the check"
        time.sleep(0.05)


def test_killed_extraction_leaves_nothing_that_looks_complete(tmp_path):
    take = write_take(tmp_path / "frames", frames=tuple(range(0, 300, 30)))
    out = tmp_path / "out" / "take-1.zarr"
    proc = writer_process(take, out)
    try:
        wait_for(tmp_path / "out", f".tmp-*/take-1.zarr/{EGO}/zarr.json", [proc])
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
    extract_features(
        annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=CFG
    )  # the re-run completes and tidies up
    assert FeatureStore(out).frames("cam02") == list(range(0, 300, 30))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["take-1.zarr"]


def test_concurrent_writers_leave_a_valid_store(tmp_path):
    """Issue 10 defect 2: a second writer (another working directory, no Snakemake lock) deleted
    the first one's temporary folder, which then finished as a store marked complete without arrays."""
    frames = tuple(range(0, 240, 30))
    take = write_take(tmp_path / "frames", frames=frames)
    out = tmp_path / "out" / "take-1.zarr"
    first = writer_process(take, out, delay=1.0)
    try:
        wait_for(tmp_path / "out", f".tmp-*/take-1.zarr/{EGO}/zarr.json", [first])
        second = writer_process(take, out, delay=0.05)  # starts later, finishes first
        assert second.wait(120) == 0 and first.wait(120) == 0
    finally:
        first.kill()
    store = FeatureStore(out)  # the last writer's store replaced the first one's: both were whole
    alone = tmp_path / "alone" / "take-1.zarr"
    single = writer_process(take, alone, delay=0.0)
    assert single.wait(120) == 0
    for cam in (EGO, *EXO):
        np.testing.assert_array_equal(store.read_many(cam, list(frames)), FeatureStore(alone).read_many(cam, list(frames)))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["take-1.zarr"]


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    import socket

    take = write_take(tmp_path / "frames")
    out = tmp_path / "out" / "take-1.zarr"
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    try:
        keep = [
            out.parent / f".tmp-take-1.zarr-{host}-{live.pid}-abcd1234",  # a writer still running here
            out.parent / f".tmp-take-1.zarr-otherhost-{dead.pid}-abcd1234",  # another host: cannot tell
            out.parent / ".tmp-take-1.zarr-x1y2z3w4",
        ]  # unknown owner
        gone = out.parent / f".tmp-take-1.zarr-{host}-{dead.pid}-abcd1234"
        for d in (*keep, gone):
            (d / "take-1.zarr").mkdir(parents=True)
        extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=CFG)
        assert all(d.is_dir() for d in keep) and not gone.exists()
        assert FeatureStore(out).frames(EGO) == [0, 30, 60, 90, 120]
    finally:
        live.kill()
        live.wait()


def test_killed_writer_beside_a_live_one_leaves_no_complete_looking_store(tmp_path):
    take = write_take(tmp_path / "frames", frames=tuple(range(0, 240, 30)))
    out = tmp_path / "out" / "take-1.zarr"
    victim, survivor = writer_process(take, out, delay=0.4), writer_process(take, out, delay=0.4)
    try:
        wait_for(tmp_path / "out", ".tmp-*/take-1.zarr/cam01/zarr.json", [victim, survivor], count=2)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        assert not out.exists() and survivor.poll() is None  # nothing looks finished while the survivor writes
        assert survivor.wait(120) == 0
    finally:
        victim.kill()
        survivor.kill()
    assert FeatureStore(out).frames("cam01") == list(range(0, 240, 30))
    (left,) = [p for p in (tmp_path / "out").iterdir() if p.name != "take-1.zarr"]  # the victim's, now abandoned
    assert str(victim.pid) in left.name
    with pytest.raises(ValueError, match="incomplete feature store"):
        FeatureStore(left / "take-1.zarr")
    extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=CFG)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["take-1.zarr"]


@pytest.mark.parametrize("compressor", ["none", "zstd", "lz4", "blosc"])
def test_direct_shard_files_are_zarrs_own_bytes(tmp_path, compressor):
    from omama.features.shards import RowArray
    from omama.features.store import compressors

    data = np.random.default_rng(0).standard_normal((7, 6, 3, 5)).astype(np.float16)
    arrays = {}
    for name in ("zarr", "direct"):
        g = zarr.open_group(tmp_path / f"{name}.zarr", mode="w", zarr_format=3)
        arrays[name] = g.create_array(
            "a",
            shape=data.shape,
            chunks=(1, 6, 3, 5),
            shards=(3, 6, 3, 5),
            dtype=data.dtype,
            compressors=compressors(compressor, 3),
            fill_value=0,
        )
    arrays["zarr"][:] = data
    direct = RowArray(arrays["direct"], tmp_path / "direct.zarr" / "a")
    for i in (2, 0, 1):  # shards are independent files, written in any order (the writer pool)
        direct.write_shard(i, data[3 * i : 3 * i + 3])
    for i in range(3):
        key = f"a/c/{i}/0/0/0"
        assert (tmp_path / "direct.zarr" / key).read_bytes() == (tmp_path / "zarr.zarr" / key).read_bytes()
    rows = [6, 0, 1, 2, 2, 5, 3]
    np.testing.assert_array_equal(RowArray(arrays["zarr"], tmp_path / "zarr.zarr" / "a").read(rows), data[rows])
    np.testing.assert_array_equal(zarr.open_group(tmp_path / "direct.zarr", mode="r")["a"][:], data)


def test_writer_pool_gives_the_single_writer_arrays(tmp_path):
    take = write_take(tmp_path / "frames", frames=tuple(range(0, 330, 30)))
    ann, images = take / "annotation.json", take / "images"
    extract_features(
        annotation_json=ann, images_dir=images, out_store=tmp_path / "one.zarr", backbone_cfg=CFG, write_threads=1
    )
    extract_features(
        annotation_json=ann,
        images_dir=images,
        out_store=tmp_path / "pool.zarr",
        backbone_cfg=CFG,
        write_threads=4,
        shard_frames=2,
    )
    one, pool = zarr.open_group(tmp_path / "one.zarr", mode="r"), zarr.open_group(tmp_path / "pool.zarr", mode="r")
    assert pool[EGO].shards == (2, 32, 4, 4) and one[EGO].shards == (11, 32, 4, 4)
    for cam in (EGO, *EXO):
        np.testing.assert_array_equal(one[cam][:], pool[cam][:])


def test_int8_store_round_trips_within_its_stated_error(tmp_path):
    take = write_take(tmp_path / "frames")
    ann, images = take / "annotation.json", take / "images"
    extract_features(
        annotation_json=ann,
        images_dir=images,
        out_store=tmp_path / "f32.zarr",
        backbone_cfg={**CFG, "dtype": "float32", "compressor": "none"},
    )
    extract_features(
        annotation_json=ann,
        images_dir=images,
        out_store=tmp_path / "i8.zarr",
        backbone_cfg={**CFG, "dtype": "int8", "compressor": "none"},
    )
    exact, q = FeatureStore(tmp_path / "f32.zarr"), FeatureStore(tmp_path / "i8.zarr")
    assert q.attrs["dtype"] == "int8" and "max_error" in q.attrs["quantisation"]
    frames = [0, 30, 60, 90, 120]
    for cam in (EGO, "cam01"):
        x = exact.read_many(cam, frames)
        codes, dequant = q.read_stored(cam, frames)
        assert codes.dtype == np.int8 and dequant.shape == (5, 2, 32) and codes.min() >= -127
        bound = (x.max(axis=(2, 3)) - x.min(axis=(2, 3))) / 508  # half a step, per frame and channel
        err = np.abs(q.read_many(cam, frames) - x)
        assert np.all(err <= bound[..., None, None] * (1 + 1e-4) + 1e-6)
        assert err.max() > 0  # it is lossy: the test would notice a float store posing as int8
    size = {
        n: sum(p.stat().st_size for p in (tmp_path / f"{n}.zarr" / EGO / "c").rglob("*") if p.is_file()) for n in ("f32", "i8")
    }
    assert size["i8"] < 0.3 * size["f32"]  # codes: a quarter of float32, half of float16 (+ the shard index)


@pytest.mark.parametrize("damage", ["camera array", "shard file", "frames list"])
def test_broken_store_is_rejected_on_open(tmp_path, damage):
    import shutil

    take = write_take(tmp_path / "frames")
    out = tmp_path / "features" / "take-1.zarr"
    extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=CFG)
    if damage == "camera array":
        shutil.rmtree(out / "cam01")
        what = "array of camera 'cam01' missing"
    elif damage == "shard file":
        (out / "cam02" / "c" / "0" / "0" / "0" / "0").unlink()
        what = "array 'cam02': shard files \\[0\\] missing"
    else:
        meta = json.loads((out / EGO / "zarr.json").read_text())
        meta["attributes"]["frames"] = meta["attributes"]["frames"][:-1]
        (out / EGO / "zarr.json").write_text(json.dumps(meta))
        what = f"camera '{EGO}': shape .* frames 4, expected"
    with pytest.raises(StoreError, match=f"broken feature store {out}: {what}.*-R features"):
        FeatureStore(out)


@pytest.mark.slow
def test_rules_write_store_and_proposals(tmp_path):
    from conftest import run_snakemake, tiny_config

    from omama.layout import Layout

    L = Layout("results")
    D = L.data("tabletop")
    cfg = tiny_config()
    cfg["backbones"]["tiny-dinov2"].update(ego_grid=[4, 4], exo_grid=[3, 5], tiny=TINY)
    write_take(tmp_path / D.frames("take-1"))
    run_snakemake(
        tmp_path,
        cfg,
        D.features("tiny-dinov2", "take-1"),
        D.proposals("classical", "take-1"),
        "--allowed-rules",
        "features",
        "proposals",
    )
    assert sorted(load_proposals(tmp_path / D.proposals("classical", "take-1"))) == [0, 30, 60, 90, 120]
    store = FeatureStore(tmp_path / D.features("tiny-dinov2", "take-1"))
    assert store.frames(EGO) == [0, 30, 60, 90, 120] and store.attrs["backbone"]["channels"] == 32
    assert store.attrs["backbone_name"] == "tiny-dinov2"
    job = dict(dataset="tabletop", backbone="tiny-dinov2", take="take-1")
    assert (tmp_path / L.log("features", "dataset", "backbone", "take").format(**job)).exists()
    assert (tmp_path / L.benchmark("features", "dataset", "backbone", "take").format(**job)).exists()
