"""Feature extraction on this CPU: frames/s of the default backbone, and Zarr store I/O vs numpy.save/load.

Usage: OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/features_cpu.py [--frames 16] [--io-frames 24]
Prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
import zarr

from omama.backbones import load_backbone
from omama.features import FeatureStore, compressors, extract_features

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), platform.processor())
    return f"{name}, {torch.get_num_threads()} torch threads"


def write_take(root: Path, n: int, ego: tuple[int, int], exo: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    cams = {"aria01_214-1": ego, "cam01": exo, "cam02": exo}
    for cam, (h, w) in cams.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        for f in range(n):
            cv2.imwrite(str(root / "images" / cam / f"{30 * f}.jpg"), np.roll(base, f, axis=1))
    ann = {"take_uid": "bench", "ego_cam": "aria01_214-1", "exo_cams": ["cam01", "cam02"],
           "subsample_idx": [30 * f for f in range(n)], "masks": {}}
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


def extraction(tmp: Path, n: int) -> dict:
    cfg = yaml.safe_load(open(REPO / "config.yaml"))
    name = next(iter(cfg["backbones"]))
    bcfg = cfg["backbones"][name]
    syn = cfg["synthetic"]
    take = write_take(tmp / "take", n, (syn["ego_size"], syn["ego_size"]), tuple(syn["exo_size"]))
    bb = load_backbone(bcfg)
    rng = np.random.default_rng(0)
    batch = [rng.integers(0, 256, (syn["ego_size"], syn["ego_size"], 3), dtype=np.uint8)] * bcfg["batch_size"]
    bb.features(batch, "ego")  # warm-up
    t = time.perf_counter()
    reps = max(1, n // bcfg["batch_size"])
    for _ in range(reps):
        bb.features(batch, "ego")
    model_fps = reps * len(batch) / (time.perf_counter() - t)
    t = time.perf_counter()
    extract_features(take / "annotation.json", take / "images", tmp / "out.zarr", bcfg, backbone=bb)
    e2e = time.perf_counter() - t
    return {"backbone": name, "describe": bb.describe(), "frames": 3 * n, "e2e_fps": 3 * n / e2e,
            "model_ego_fps": model_fps, "batch": len(batch)}


def throughput(tmp: Path, n: int) -> list[dict]:
    """ViT-B/14 ego-sized features (768, 50, 50) float16, n frames: Zarr (sharded) vs numpy files."""
    rng = np.random.default_rng(0)
    # smooth-ish values like real features (random normal with a spatially correlated part)
    base = rng.standard_normal((768, 50, 50)).astype(np.float32)
    data = np.stack([(base + 0.3 * rng.standard_normal(base.shape)).astype(np.float16) for _ in range(n)])
    mb = data.nbytes / 2**20
    rows = []
    for comp in ("zstd", "none"):
        path = tmp / f"io-{comp}.zarr"
        t = time.perf_counter()
        g = zarr.open_group(path, mode="w", zarr_format=3)
        a = g.create_array("cam", shape=data.shape, chunks=(1, *data.shape[1:]), shards=data.shape,
                           dtype=data.dtype, compressors=compressors(comp, 3), fill_value=0)
        a[:] = data
        g.attrs.update({"complete": True, "cameras": ["cam"]})
        write = time.perf_counter() - t
        a.attrs["frames"] = list(range(n))
        a.attrs["view"] = "ego"
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
        store = FeatureStore(path)
        t = time.perf_counter()
        for f in rng.permutation(n):
            store.read("cam", int(f))
        read = time.perf_counter() - t
        rows.append({"what": f"Zarr v3 sharded, {comp}", "write": mb / write, "read_frame": mb / read, "size": size})
        shutil.rmtree(path)
    path = tmp / "io.npy"
    t = time.perf_counter()
    np.save(path, data)
    write = time.perf_counter() - t
    t = time.perf_counter()
    loaded = np.load(path)
    read_all = time.perf_counter() - t
    mm = np.load(path, mmap_mode="r")
    t = time.perf_counter()
    for f in rng.permutation(n):
        np.asarray(mm[int(f)], dtype=np.float32)
    read = time.perf_counter() - t
    assert np.array_equal(loaded, data)
    rows.append({"what": "numpy.save / np.load(mmap) per frame", "write": mb / write, "read_frame": mb / read,
                 "size": path.stat().st_size / 2**20, "read_all": mb / read_all})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=16, help="frames per camera of the extraction take")
    ap.add_argument("--io-frames", type=int, default=24, help="frames of (768, 50, 50) for the I/O test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ex = extraction(tmp, args.frames)
        io = throughput(tmp, args.io_frames)
    d = ex["describe"]
    print(f"## features_cpu.py: feature extraction and store I/O on CPU\n")
    print(f"Device: {cpu_model()}. Command: `PYTHONPATH=. python benchmarks/features_cpu.py --frames {args.frames} "
          f"--io-frames {args.io_frames}`.\n")
    print(f"Backbone `{ex['backbone']}` ({d['architecture']}, untrained={d['untrained']}, {d['parameters']:,} "
          f"parameters, inputs ego {d['input_size']['ego']} / exo {d['input_size']['exo']}):\n")
    print("| measure | frames/s |\n|---|---|")
    print(f"| network only (prepare + forward), ego frames, batch {ex['batch']} | {ex['model_ego_fps']:.1f} |")
    print(f"| extract_features end to end (JPEG decode + resize + network + Zarr write), {ex['frames']} frames "
          f"of 3 cameras | {ex['e2e_fps']:.1f} |\n")
    print(f"Store I/O, {args.io_frames} frames of float16 (768, 50, 50) (ViT-B/14 ego features, "
          f"{args.io_frames * 768 * 2500 * 2 / 2**20:.0f} MiB), MiB/s of uncompressed data:\n")
    print("| format | write MiB/s | random per-frame read MiB/s | on disk MiB |\n|---|---|---|---|")
    for r in io:
        print(f"| {r['what']} | {r['write']:.0f} | {r['read_frame']:.0f} | {r['size']:.0f} |")
    print()


if __name__ == "__main__":
    main()
