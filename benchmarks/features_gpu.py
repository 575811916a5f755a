"""Feature extraction on a GPU: DINOv2 ViT-B/14-reg (random weights) frames/s against its FLOP floor.

Usage (GPU machine):  PYTHONPATH=. python benchmarks/features_gpu.py [--frames 256] [--batch 32]
Smoke test (CPU):     PYTHONPATH=. python benchmarks/features_gpu.py --smoke

Measures, in one run: network frames/s at the official input sizes (ego 700x700, exo 532x952;
bf16 autocast, SDPA, inference_mode), the achieved TFLOP/s and its share of the card's dense
bf16 peak, and extract_features end to end (JPEG decode threads + network + Zarr writer
thread) on takes of processed-size JPEGs (ego 704x704, exo 540x960). Target: >= 450 ego
frames/s end to end on one H100. Prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from omama.backbones import load_backbone
from omama.features import extract_features

VIT_B = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "seed": 0}
SMOKE = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0}
QUOTED_GFLOP = {"ego": 659, "exo": 689}  # the design's floor for ViT-B/14-reg at 700x700 / 532x952
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16


def vit_gflop(tokens: int, patches: int, patch: int, d: int, layers: int, mlp: int) -> float:
    """Multiply-adds x 2 of one frame: patch embedding, QKV/proj/MLP matmuls, attention scores and mix."""
    per_layer = 2 * tokens * (4 * d * d + 2 * d * mlp) + 4 * tokens * tokens * d
    return (layers * per_layer + 2 * patches * 3 * patch * patch * d) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def network_fps(bb, view: str, batch: int, reps: int, device: torch.device) -> float:
    H, W = bb.input_size(view)
    x = torch.randint(0, 256, (batch, H, W, 3), dtype=torch.uint8)
    for _ in range(2):
        bb.encode(bb.normalize(x), view)
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        bb.encode(bb.normalize(x), view)
    sync(device)
    return reps * batch / (time.perf_counter() - t)


def write_take(root: Path, cams: dict, n: int) -> Path:
    rng = np.random.default_rng(0)
    for cam, (h, w) in cams.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        for f in range(n):
            cv2.imwrite(str(root / "images" / cam / f"{f}.jpg"), np.roll(base, 7 * f, axis=1),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    names = list(cams)
    ann = {"take_uid": root.name, "ego_cam": names[0], "exo_cams": names[1:], "subsample_idx": list(range(n)), "masks": {}}
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny network, tiny images, CPU: checks the script runs")
    ap.add_argument("--frames", type=int, default=256, help="frames per camera in the end-to-end takes")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10, help="timed batches of the network-only measurement")
    ap.add_argument("--compressors", default="none,zstd", help="store compressors to time end to end")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1), help="JPEG decode threads")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        args.frames, args.batch, args.reps = 4, 2, 1
    cfg = {"kind": "dinov2", "weights": "untrained", "tiny": SMOKE if args.smoke else VIT_B,
           "ego_grid": [4, 4] if args.smoke else [50, 50], "exo_grid": [3, 5] if args.smoke else [38, 68],
           "batch_size": args.batch, "dtype": "float16", "device": device.type}
    bb = load_backbone(cfg, device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke)"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in card), None)
    d = bb.describe()
    print(f"## features_gpu.py: DINOv2 ViT-B/14-reg extraction vs its FLOP floor\n")
    print(f"Device: {card}; torch {torch.__version__}; network {d['architecture']} untrained (random weights), "
          f"{d['parameters']:,} parameters, autocast {d['autocast']}, attention {d['attn_implementation']}. "
          f"Command: `PYTHONPATH=. python benchmarks/features_gpu.py{' --smoke' if args.smoke else ''} "
          f"--frames {args.frames} --batch {args.batch}`.\n")
    print("| view | input | GFLOP/frame (formula; quoted) | network frames/s | TFLOP/s | share of bf16 peak |")
    print("|---|---|---|---|---|---|")
    for view in ("ego", "exo"):
        (H, W), (h, w) = bb.input_size(view), bb.grid(view)
        t = VIT_B if not args.smoke else SMOKE
        gflop = vit_gflop(h * w + 5, h * w, bb.patch_size, t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"])
        fps = network_fps(bb, view, args.batch, args.reps, device)
        tflops = fps * gflop / 1e3
        share = f"{tflops / peak:.0%}" if peak else "n/a"
        quoted = QUOTED_GFLOP[view] if not args.smoke else "-"
        print(f"| {view} | {H}x{W} | {gflop:.3g}; {quoted} | {fps:.1f} | {tflops:.1f} | {share} |")
    print()
    ego, exo = ((48, 48), (36, 64)) if args.smoke else ((704, 704), (540, 960))
    print("| end to end (decode + network + Zarr write) | compressor | frames | frames/s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        takes = {f"ego {ego[0]}x{ego[1]} JPEG": write_take(Path(tmp) / "ego", {"aria01_214-1": ego}, args.frames),
                 f"ego + exo {exo[0]}x{exo[1]} JPEG": write_take(Path(tmp) / "both", {"aria01_214-1": ego, "cam01": exo},
                                                                 args.frames)}
        for comp in args.compressors.split(","):
            for name, take in takes.items():
                n = args.frames * (1 if take.name == "ego" else 2)
                sync(device)
                t = time.perf_counter()
                extract_features(take / "annotation.json", take / "images", Path(tmp) / f"{take.name}-{comp}.zarr",
                                 {**cfg, "compressor": comp}, device=device.type, workers=args.workers, backbone=bb)
                sync(device)
                print(f"| {name} | {comp} | {n} | {n / (time.perf_counter() - t):.1f} |")
    print()


if __name__ == "__main__":
    main()
