"""Feature extraction on this CPU: frames/s of the default backbone (store I/O: benchmarks/store_io.py).

Usage: OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/features_cpu.py [--frames 16]
       PYTHONPATH=. python benchmarks/features_cpu.py --smoke   # 2 frames, untrained weights: checks it runs
Prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from omama.features.backbones import load_backbone
from omama.features.store import extract_features

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), platform.processor())
    return f"{name}, {torch.get_num_threads()} torch threads"


def write_take(root: Path, n: int, ego: tuple[int, int], exo: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    cams = {"aria01_214-1": ego, "cam01": exo, "cam02": exo}
    for cam, (h, w) in cams.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        for f in range(n):
            cv2.imwrite(str(root / "images" / cam / f"{30 * f}.jpg"), np.roll(base, f, axis=1))
    ann = {
        "take_uid": "bench",
        "ego_cam": "aria01_214-1",
        "exo_cams": ["cam01", "cam02"],
        "subsample_idx": [30 * f for f in range(n)],
        "masks": {},
    }
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


def extraction(tmp: Path, n: int, untrained: bool = False) -> dict:
    cfg = yaml.safe_load(open(REPO / "config.yaml"))
    name = next(iter(cfg["backbones"]))
    bcfg = {**cfg["backbones"][name], **({"weights": "untrained"} if untrained else {})}
    syn = cfg["datasets"]["tabletop"]["synthetic"]
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
    extract_features(
        annotation_json=take / "annotation.json",
        images_dir=take / "images",
        out_store=tmp / "out.zarr",
        backbone_cfg=bcfg,
        backbone=bb,
    )
    e2e = time.perf_counter() - t
    return {
        "backbone": name,
        "describe": bb.describe(),
        "frames": 3 * n,
        "e2e_fps": 3 * n / e2e,
        "model_ego_fps": model_fps,
        "batch": len(batch),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=16, help="frames per camera of the extraction take")
    ap.add_argument("--smoke", action="store_true", help="2 frames, the same network untrained (no weights file)")
    args = ap.parse_args()
    if args.smoke:
        args.frames = 2
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ex = extraction(tmp, args.frames, untrained=args.smoke)
    d = ex["describe"]
    print("## features_cpu.py: feature extraction on CPU\n")
    print(f"Device: {cpu_model()}. Command: `PYTHONPATH=. python benchmarks/features_cpu.py --frames {args.frames}`.\n")
    print(
        f"Backbone `{ex['backbone']}` ({d['architecture']}, untrained={d['untrained']}, {d['parameters']:,} "
        f"parameters, inputs ego {d['input_size']['ego']} / exo {d['input_size']['exo']}):\n"
    )
    print("| measure | frames/s |\n|---|---|")
    print(f"| network only (prepare + forward), ego frames, batch {ex['batch']} | {ex['model_ego_fps']:.1f} |")
    print(
        f"| extract_features end to end (JPEG decode + resize + network + Zarr write), {ex['frames']} frames "
        f"of 3 cameras | {ex['e2e_fps']:.1f} |\n"
    )


if __name__ == "__main__":
    main()
