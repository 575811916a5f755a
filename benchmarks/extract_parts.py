"""Where feature extraction's end-to-end rate goes on a GPU: JPEG decoding (Pillow against OpenCV, the
decoder ``omama.io.load_frame`` uses) at several thread counts, the network path with and without
the copy back to host memory, and ``extract_features`` itself with each decoder. One run, ratios
within the run.

    PYTHONPATH=. python benchmarks/extract_parts.py            # CUDA: ViT-B/14-reg, 704x704 JPEGs
    PYTHONPATH=. python benchmarks/extract_parts.py --smoke    # CPU, tiny sizes: checks it runs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from gpu_check import sync, vit_config, write_take
from PIL import Image

import omama.features.store as features
from omama.features.backbones import load_backbone
from omama.io import load_frame

CAM = "aria01_214-1"


def pillow_frame(path, take=None, cam=None, frame=None) -> np.ndarray:
    """The decoder load_frame used before: Pillow."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def opencv_frame(path, take=None, cam=None, frame=None) -> np.ndarray:
    return load_frame(path, "benchmark", CAM, 0)


DECODERS = {"Pillow": pillow_frame, "OpenCV": opencv_frame}


def decode_fps(paths: list[Path], fn, threads: int) -> float:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, paths[:threads]))  # warm-up
        t = time.perf_counter()
        list(pool.map(fn, paths))
        return len(paths) / (time.perf_counter() - t)


def network_path_fps(bb, images: list[np.ndarray], batch: int, copy_back: str, device: torch.device) -> float:
    """stack, pin, normalise, network, fp16; then no copy back, ``to_host`` (pinned) plus the shard
    buffer's copy, or a plain ``.cpu()`` into pageable memory."""
    sync(device)
    t, waiting = time.perf_counter(), []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i : i + batch]))
        x = x.pin_memory() if device.type == "cuda" else x
        y = bb.encode(bb.normalize(x), "ego").to(torch.float16)
        if copy_back == "pinned":
            waiting.append(features.to_host([y]))
            while len(waiting) > 1 or (waiting and i + batch >= len(images)):
                rows, ready = waiting.pop(0)
                if ready is not None:
                    ready.synchronize()
                np.array(rows[0].numpy())
        elif copy_back == "pageable":
            y.cpu()
    sync(device)
    return len(images) / (time.perf_counter() - t)


def extract_fps(take: Path, out: Path, cfg: dict, bb, workers: int, decoder, device: torch.device) -> float:
    """extract_features with ``decoder`` in place of load_frame."""
    saved = features.load_frame
    features.load_frame = decoder
    try:
        sync(device)
        t = time.perf_counter()
        features.extract_features(
            annotation_json=take / "annotation.json",
            images_dir=take / "images",
            out_store=out,
            backbone_cfg=cfg,
            device=device.type,
            workers=workers,
            backbone=bb,
            write_threads=8,
        )
        sync(device)
        return len(list((take / "images" / CAM).glob("*.jpg"))) / (time.perf_counter() - t)
    finally:
        features.load_frame = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny network and images on the CPU")
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    n, size = (16, 56) if args.smoke else (args.frames, 704)
    cfg = {**vit_config(smoke=args.smoke, batch=4 if args.smoke else 32, device=device), "compressor": "none"}
    bb = load_backbone(cfg, device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke)"
    with tempfile.TemporaryDirectory() as tmp:
        take = write_take(Path(tmp) / "ego", {CAM: (size, size)}, n)
        paths = sorted((take / "images" / CAM).glob("*.jpg"))
        same = all(np.array_equal(pillow_frame(p), opencv_frame(p)) for p in paths)
        print(f"## extract_parts.py: {card}\n")
        print(
            f"{n} JPEGs of {size}x{size}, one camera; network {bb.describe()['architecture']} (random weights), "
            f"batch {cfg['batch_size']}, stores uncompressed in {tmp}. Pillow and OpenCV decode identical pixels: "
            f"{same}.\n"
        )
        print("| part | frames/s |\n|---|---|")
        for name, fn in DECODERS.items():
            rates = " / ".join(f"{decode_fps(paths, fn, t):.0f}" for t in args.threads)
            print(f"| decode, {name}, {' / '.join(map(str, args.threads))} threads | {rates} |")
        images = [bb.resize(opencv_frame(p), "ego") for p in paths]
        network_path_fps(bb, images, cfg["batch_size"], "none", device)  # warm-up
        for copy_back in ("none", "pinned", "pageable"):
            rate = network_path_fps(bb, images, cfg["batch_size"], copy_back, device)
            print(f"| network path, copy back: {copy_back} | {rate:.0f} |")
        extract_fps(take, Path(tmp) / "warm.zarr", cfg, bb, args.threads[-1], opencv_frame, device)  # warm-up
        for name, fn in DECODERS.items():
            rates = [extract_fps(take, Path(tmp) / f"{name}-{t}.zarr", cfg, bb, t, fn, device) for t in args.threads]
            print(
                f"| extract_features, {name}, {' / '.join(map(str, args.threads))} threads | {' / '.join(f'{r:.0f}' for r in rates)} |"
            )
        print()


if __name__ == "__main__":
    main()
