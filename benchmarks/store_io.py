"""Feature-store I/O against a plain file of the same bytes, in one run: writes (before = zarr's own
writer, one shard per call on one thread, as extract_features did; after = omama.features.shards whole-shard
writes from a thread pool) and batch reads (before = one zarr call per frame; after = one
RowArray.read per batch; reference = np.load(mmap) fancy indexing), per codec.

Frames are official-size ViT-B/14 ego features: float16 (768, 50, 50), 3.84 MB each, values
"feature-like" (a shared spatial pattern plus noise: real float16 activations compress about as
poorly). Each write is timed back to back with a plain write of the same bytes and the median of
those ratios is reported (other jobs share the machine); read figures are medians of --repeats.

Then the training loader's feature reads (whole batches per store, float16) against np.load(mmap)
gathers of the same bytes, with and without worker processes.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/store_io.py [--frames 64] [--threads 1 2 4] [--fsync]
    PYTHONPATH=. python benchmarks/store_io.py --smoke     # tiny sizes: checks that every part runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
import zarr

from omama.features.backbones import Backbone
from omama.features.shards import RowArray
from omama.features.store import FeatureStore, compressors, extract_features
from omama.model.batches import read_stored_batch

SHAPE = (768, 50, 50)


def feature_like(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(SHAPE).astype(np.float32)
    return np.stack([(base + 0.3 * rng.standard_normal(SHAPE)).astype(np.float16) for _ in range(n)])


def fsync_tree(path: Path) -> None:
    for p in [path] if path.is_file() else (q for q in path.rglob("*") if q.is_file()):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def paired(fn, reference, repeats: int) -> tuple[float, float]:
    """(median seconds of fn, median of reference/fn over back-to-back pairs): ratios survive load swings.

    Each callable returns a function that does the timed work; what it does before returning
    (deleting the last output, creating the array's metadata) is not timed.
    """
    times, ratios = [], []
    for _ in range(repeats):
        pair = []
        for f in (reference, fn):
            work = f()
            t = time.perf_counter()
            work()
            pair.append(time.perf_counter() - t)
        times.append(pair[1])
        ratios.append(pair[0] / pair[1])
    return float(np.median(times)), float(np.median(ratios))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def new_array(path: Path, data: np.ndarray, codec: str, shard: int) -> zarr.Array:
    shutil.rmtree(path, ignore_errors=True)
    g = zarr.open_group(path, mode="w", zarr_format=3)
    return g.create_array(
        "cam",
        shape=data.shape,
        chunks=(1, *SHAPE),
        shards=(shard, *SHAPE),
        dtype=data.dtype,
        compressors=compressors(codec, 3 if codec != "lz4" else 1),
        fill_value=0,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--shard", type=int, default=16, help="frames per shard (extract_features: 16 at this size)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--codecs", nargs="+", default=["none", "lz4", "zstd"])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fsync", action="store_true", help="fsync every written file (plain and stores alike)")
    ap.add_argument("--loader-only", action="store_true", help="only the training-loader measurement")
    ap.add_argument("--loader-takes", type=int, default=3, help="takes of the loader measurement (0: skip it)")
    ap.add_argument("--loader-frames", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader worker processes to time")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temporary one beside the repo)")
    ap.add_argument("--smoke", action="store_true", help="a few frames, one repeat: checks that every part runs")
    a = ap.parse_args()
    if a.smoke:
        a.frames, a.shard, a.threads, a.codecs, a.batch, a.repeats = 4, 2, [2], ["none", "zstd"], 2, 1
        a.loader_takes, a.loader_frames, a.workers = 1, 4, [0]
    data = feature_like(a.frames)
    mib = data.nbytes / 2**20
    root = Path(tempfile.mkdtemp(prefix=".store_io-", dir=a.dir or Path(__file__).resolve().parents[1]))
    rows = []
    try:
        if a.loader_only:
            return loader(root, a)
        plain = root / "plain.bin"

        def write_plain():
            plain.unlink(missing_ok=True)

            def work():
                with open(plain, "wb") as f:
                    f.write(memoryview(data).cast("B"))
                if a.fsync:
                    fsync_tree(plain)

            return work

        t_plain, _ = paired(write_plain, write_plain, a.repeats)
        rows.append(("plain file (one write)", "-", "-", mib / t_plain, 1.0, mib))
        for codec in a.codecs:
            path = root / f"{codec}.zarr"

            def zarr_writer():
                arr = new_array(path, data, codec, a.shard)

                def work():
                    for s in range(0, a.frames, a.shard):
                        arr[s : s + a.shard] = data[s : s + a.shard]
                    if a.fsync:
                        fsync_tree(path)

                return work

            t, ratio = paired(zarr_writer, write_plain, a.repeats)
            rows.append(("before: zarr, one shard per call", codec, 1, mib / t, ratio, du(path)))
            for threads in a.threads:

                def direct():
                    arr = RowArray(new_array(path, data, codec, a.shard), path / "cam")

                    def work():
                        with ThreadPoolExecutor(threads) as pool:
                            list(
                                pool.map(
                                    lambda i: arr.write_shard(i, data[i * a.shard : (i + 1) * a.shard]), range(arr.nshards)
                                )
                            )
                        if a.fsync:
                            fsync_tree(path)

                    return work

                t, ratio = paired(direct, write_plain, a.repeats)
                rows.append(("after: omama.features.shards writer pool", codec, threads, mib / t, ratio, du(path)))
            arr = zarr.open_group(path, mode="r")["cam"]
            assert np.array_equal(arr[:], data), codec
        print("## store_io.py: feature-store writes and reads vs a plain file\n")
        print(
            f"Machine: {cpu()}; load average before the run {os.getloadavg()[0]:.1f}. Command: `OMP_NUM_THREADS=1 "
            f"PYTHONPATH=. python benchmarks/store_io.py --frames {a.frames} --threads {' '.join(map(str, a.threads))}"
            f"{' --fsync' if a.fsync else ''}`. {a.frames} frames of float16 {SHAPE} ({mib:.0f} MiB), shards of "
            f"{a.shard} frames, median of {a.repeats}; {'with' if a.fsync else 'without'} fsync (both sides).\n"
        )
        print(
            "| writer | codec | threads | MiB/s | plain-write time / this (median of pairs) | on disk MiB |\n|---|---|---|---|---|---|"
        )
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0%} | {r[5]:.0f} |")
        print()
        reads(root, data, a)
        if a.loader_takes:
            loader(root, a)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reads(root: Path, data: np.ndarray, a) -> None:
    """Random batches of --batch frames (page cache warm): per-frame zarr calls, RowArray.read, np.load(mmap)."""
    rng = np.random.default_rng(1)
    batches = [rng.choice(a.frames, min(a.batch, a.frames), replace=False) for _ in range(8)]
    mib = sum(map(len, batches)) * data[0].nbytes / 2**20
    np.save(root / "ref.npy", data)
    mm = np.load(root / "ref.npy", mmap_mode="r")
    t_np = median_time(lambda: [np.array(mm[np.sort(b)]) for b in batches], a.repeats)
    print(f"Reads: {len(batches)} random batches of {a.batch} frames, page cache warm; MiB/s of float16 data.\n")
    print("| reader | codec | MiB/s | share of np.load(mmap) |\n|---|---|---|---|")
    print(f"| np.load(mmap_mode='r')[sorted batch] | - | {mib / t_np:.0f} | 100% |")
    for codec in a.codecs:
        arr = new_array(root / f"r-{codec}.zarr", data, codec, a.shard)
        arr[:] = data
        direct = RowArray(arr, root / f"r-{codec}.zarr" / "cam")
        t_z = median_time(lambda: [np.stack([arr[int(i)] for i in b]) for b in batches], a.repeats)
        t_d = median_time(lambda: [direct.read(b) for b in batches], a.repeats)
        assert all(np.array_equal(direct.read(b), data[b]) for b in batches)
        print(f"| before: zarr, one call per frame | {codec} | {mib / t_z:.0f} | {t_np / t_z:.0%} |")
        print(f"| after: RowArray.read, one call per batch | {codec} | {mib / t_d:.0f} | {t_np / t_d:.0%} |")
    print()


class FeatureBatches(torch.utils.data.Dataset):
    """The feature part of the training loader: TrainingSet's batched store reads, nothing else."""

    def __init__(self, stores: dict, samples: list):
        self.stores, self.samples = stores, samples

    def __len__(self):
        return len(self.samples)

    def __getitems__(self, idx):
        takes, frames = [self.samples[i][0] for i in idx], [self.samples[i][1] for i in idx]
        src, _ = read_stored_batch(self.stores.get, takes, ["cam01"] * len(idx), frames)
        dst, _ = read_stored_batch(self.stores.get, takes, ["aria01_214-1"] * len(idx), frames)
        return {"src_feat": torch.from_numpy(src), "dst_feat": torch.from_numpy(dst)}


def loader(root: Path, a) -> None:
    """Batches/s of the training loader's feature reads vs np.load(mmap) gathers of the same bytes."""
    grids, sizes = {"ego": (50, 50), "exo": (38, 68)}, {"ego": (700, 700), "exo": (532, 952)}
    torch.manual_seed(0)
    bb = Backbone(torch.nn.Conv2d(3, 768, 14, 14), 768, 14, grids, sizes, {"kind": "conv-stand-in"})
    stores, npys = {}, {}
    for t in range(a.loader_takes):
        take = root / f"take{t}"
        cams = {"aria01_214-1": sizes["ego"], "cam01": sizes["exo"]}
        rng = np.random.default_rng(t)
        for cam, (h, w) in cams.items():
            (take / "images" / cam).mkdir(parents=True)
            for f in range(a.loader_frames):
                cv2.imwrite(str(take / "images" / cam / f"{f}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        (take / "annotation.json").write_text(
            json.dumps(
                {
                    "take_uid": f"take{t}",
                    "ego_cam": "aria01_214-1",
                    "exo_cams": ["cam01"],
                    "subsample_idx": list(range(a.loader_frames)),
                }
            )
        )
        extract_features(
            annotation_json=take / "annotation.json",
            images_dir=take / "images",
            out_store=root / f"take{t}.zarr",
            backbone_cfg={
                "kind": "dinov2",  # the store records the stand-in's own description; these are its settings
                "weights": "untrained",
                "ego_grid": list(grids["ego"]),
                "exo_grid": list(grids["exo"]),
                "dtype": "float16",
                "compressor": "none",
                "batch_size": 8,
            },
            backbone=bb,
        )
        stores[f"take{t}"] = FeatureStore(root / f"take{t}.zarr")
        for cam in cams:
            np.save(root / f"take{t}-{cam}.npy", stores[f"take{t}"].read_stored(cam, range(a.loader_frames))[0])
            npys[f"take{t}", cam] = np.load(root / f"take{t}-{cam}.npy", mmap_mode="r")
    samples = [(f"take{t}", f) for t in range(a.loader_takes) for f in range(a.loader_frames)]
    parts = max(1, len(samples) // a.batch)
    batches = [b.tolist() for b in np.array_split(np.random.default_rng(2).permutation(len(samples)), parts)]
    mb = sum(len(b) for b in batches) * (768 * (2500 + 38 * 68) * 2) / 2**20

    def mmap_epoch():
        for b in batches:
            for cam in ("cam01", "aria01_214-1"):
                out = np.empty((len(b), *npys["take0", cam].shape[1:]), np.float16)
                for j, i in enumerate(b):
                    out[j] = npys[samples[i][0], cam][samples[i][1]]
                torch.from_numpy(out)

    data = FeatureBatches(stores, samples)

    def loader_epoch(workers):
        for _ in torch.utils.data.DataLoader(
            data, batch_sampler=batches, num_workers=workers, collate_fn=lambda b: b, prefetch_factor=4 if workers else None
        ):
            pass

    mmap_epoch()  # warm-up: both readers start from the same page-cache state
    loader_epoch(0)
    t_np, _ = paired(lambda: mmap_epoch, lambda: mmap_epoch, a.repeats)
    print(
        f"Training-loader feature reads: {a.loader_takes} takes x {a.loader_frames} frames, float16 stores "
        f"(compressor none), batches of {a.batch} shuffled samples, each an exo (768x38x68) and an ego (768x50x50) "
        f"frame ({mb / len(batches):.0f} MiB per batch); page cache warm; masks and candidate sets not included. "
        f"Each loader epoch is timed back to back with an np.load(mmap) epoch; median of the ratios.\n"
    )
    print("| reader | workers | batches/s | MiB/s | np.load(mmap) time / this |\n|---|---|---|---|---|")
    print(f"| np.load(mmap_mode='r') gather into a float16 batch | 0 | {len(batches) / t_np:.1f} | {mb / t_np:.0f} | 100% |")
    for workers in a.workers:
        t, ratio = paired(lambda: lambda: loader_epoch(workers), lambda: mmap_epoch, a.repeats)
        print(
            f"| training loader (DataLoader, batch sampler, TrainingSet's batched reads) | {workers} | "
            f"{len(batches) / t:.1f} | {mb / t:.0f} | {ratio:.0%} |"
        )
    print()


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    return f"{name}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
