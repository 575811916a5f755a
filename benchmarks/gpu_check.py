"""One GPU check, one run: DINOv2 ViT-B/14-reg (random weights) frames/s against its FLOP floor; the faster network
paths (larger batches, channels-last, torch.compile, CUDA graphs through compile's reduce-overhead) as ratios to the
plain path with their share of the bf16 peak; extraction with the JPEGs decoded on the device against OpenCV; end to end
with Zarr writes; one training iteration at the official grids from stores; the training loader's
batches/s; the torchvision backbones (MobileNetV2, ResNet-50 at stride 16, untrained) frames/s;
FastSAM-x (YOLOv8x-seg architecture, untrained) ms per 1024-px frame. Prints a Markdown section for
benchmarks/RESULTS.md naming the device.

Usage (GPU machine, via benchmarks/gpu_check.sh):  PYTHONPATH=. python benchmarks/gpu_check.py
Smoke test (CPU, tiny sizes, < 2 min):            PYTHONPATH=. python benchmarks/gpu_check.py --smoke

Network: official inputs (ego 700x700, exo 532x952; bf16 autocast, SDPA, inference_mode), achieved
TFLOP/s and share of the card's dense bf16 peak. End to end: extract_features (JPEG decode threads
+ network + writer pool) on takes of processed-size JPEGs (ego 704x704, exo 540x960). Targets:
>= 450 ego frames/s end to end on one H100; a training iteration (batch 24, 32 candidates) <= 60 ms
(the review measured 242 ms on a T4).
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
from store_io import FeatureBatches  # benchmarks/: the loader's feature part
from train_iteration import random_masks

from omama.features.backbones import load_backbone
from omama.features.store import FeatureStore, extract_features
from omama.model.batches import Prefetched, batch_features, read_stored_batch
from omama.model.head import MatchingHead, matching_loss, score_candidates

VIT_B = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "seed": 0}
SMOKE = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0}
QUOTED_GFLOP = {"ego": 659, "exo": 689}  # the design's floor for ViT-B/14-reg at 700x700 / 532x952
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16
EGO_CAM, EXO_CAM = "aria01_214-1", "cam01"  # the camera names store_io.FeatureBatches reads


def vit_config(*, smoke: bool, batch: int, device: torch.device) -> dict:
    """The backbone entry of the measurements: ViT-B/14-reg (random weights) at the official grids, or
    the tiny network at tiny grids for ``--smoke``."""
    return {
        "kind": "dinov2",
        "weights": "untrained",
        "tiny": SMOKE if smoke else VIT_B,
        "ego_grid": [4, 4] if smoke else [50, 50],
        "exo_grid": [3, 5] if smoke else [38, 68],
        "batch_size": batch,
        "dtype": "float16",
        "device": device.type,
    }


def vit_gflop(tokens: int, patches: int, patch: int, d: int, layers: int, mlp: int) -> float:
    """Multiply-adds x 2 of one frame: patch embedding, QKV/proj/MLP matmuls, attention scores and mix."""
    per_layer = 2 * tokens * (4 * d * d + 2 * d * mlp) + 4 * tokens * tokens * d
    return (layers * per_layer + 2 * patches * 3 * patch * patch * d) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_ms(fn, reps: int, device: torch.device) -> float:
    """Median milliseconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def network_fps(bb, view: str, batch: int, reps: int, device: torch.device) -> float:
    H, W = bb.input_size(view)
    x = torch.randint(0, 256, (batch, H, W, 3), dtype=torch.uint8)
    return batch / timed_ms(lambda: bb.encode(bb.normalize(x), view), reps, device) * 1e3


def torchvision_rows(args, device: torch.device) -> list[str]:
    """Table rows: network frames/s of the ``torchvision`` backbone kind (weights do not change the
    cost, so untrained), at the Ego-Exo4D-sized grids of stride 16 (ego 704x704, exo 544x960)."""
    rows = []
    for arch in ("mobilenet_v2", "resnet50"):
        cfg = {
            "kind": "torchvision",
            "architecture": arch,
            "weights": "untrained",
            "stride": 16,
            "ego_grid": [3, 3] if args.smoke else [44, 44],
            "exo_grid": [2, 4] if args.smoke else [34, 60],
            "batch_size": args.batch,
            "device": device.type,
        }
        bb = load_backbone(cfg, device)
        fps = {view: network_fps(bb, view, args.batch, args.reps, device) for view in ("ego", "exo")}
        (eh, ew), (xh, xw) = bb.input_size("ego"), bb.input_size("exo")
        rows.append(
            f"| {arch} | {bb.channels} | {eh}x{ew} | {fps['ego']:.1f} | {xh}x{xw} | {fps['exo']:.1f} | "
            f"{bb.describe()['autocast']} |"
        )
    return rows


def write_take(root: Path, cams: dict, n: int) -> Path:
    rng = np.random.default_rng(0)
    for cam, (h, w) in cams.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        for f in range(n):
            cv2.imwrite(str(root / "images" / cam / f"{f}.jpg"), np.roll(base, 7 * f, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 95])
    names = list(cams)
    ann = {"take_uid": root.name, "ego_cam": names[0], "exo_cams": names[1:], "subsample_idx": list(range(n)), "masks": {}}
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


def training_iteration(store: FeatureStore, bb, args, device: torch.device) -> tuple[float, float, float]:
    """(ms of one training iteration from the store, ms of its store read, ms of an iteration whose
    next batch is read in a background thread meanwhile): batch of args.train_batch samples, 32
    candidates, features read as float16 and made float32 on the device."""
    rng = np.random.default_rng(0)
    head = MatchingHead(src_grid=bb.grid("exo"), dst_grid=bb.grid("ego"), in_channels=bb.channels).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=8e-5)
    B = args.train_batch
    src_masks = random_masks(rng, B, 1, *bb.input_size("exo")).to(device)
    cand = random_masks(rng, B, 32, *bb.input_size("ego")).to(device)
    target, visible = torch.zeros(B, dtype=torch.long, device=device), torch.ones(B, device=device)
    frames = store.frames(EGO_CAM)

    def read():
        picks = rng.choice(frames, B).tolist()
        batch = {}
        for key, cam in (("src", EXO_CAM), ("dst", EGO_CAM)):
            values, _ = read_stored_batch({"t": store}.get, ["t"] * B, [cam] * B, picks)
            batch[f"{key}_feat"] = torch.from_numpy(values).pin_memory() if device.type == "cuda" else torch.from_numpy(values)
        return batch

    def step(batch=None):
        src, dst = batch_features(batch or read(), device=device)
        loss = matching_loss(score_candidates(head, src, dst, src_masks, cand), target, visible)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # the training loop's own synchronisation

    def prefetched() -> float:
        """ms per step when the next batch is read by omama.model.batches.Prefetched (workers: 0) meanwhile."""
        batches = iter(Prefetched((read() for _ in range(args.reps + 1)), depth=2))
        step(next(batches))  # warm-up; the queue fills meanwhile
        sync(device)
        t = time.perf_counter()
        for batch in batches:
            step(batch)
        sync(device)
        return 1e3 * (time.perf_counter() - t) / args.reps

    return timed_ms(step, args.reps, device), timed_ms(read, args.reps, device), prefetched()


def loader_batches_per_s(store: FeatureStore, args, workers: int) -> float:
    frames = store.frames(EGO_CAM)
    samples = [("t", f) for f in frames]
    rng = np.random.default_rng(1)
    batches = [rng.choice(len(samples), args.train_batch).tolist() for _ in range(args.loader_batches)]
    data = FeatureBatches({"t": store}, samples)
    loader = lambda: torch.utils.data.DataLoader(
        data,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=lambda b: b,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers else None,
    )
    for _ in loader():  # warm-up (page cache, worker start)
        pass
    t = time.perf_counter()
    for _ in loader():
        pass
    return len(batches) / (time.perf_counter() - t)


def fastsam_ms(args, device: torch.device) -> tuple[float, int]:
    """ms per frame of the FastSAM-x network (YOLOv8x-seg with one class, untrained), fp16 on a GPU."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.nn.tasks import SegmentationModel

    model = SegmentationModel("yolov8x-seg.yaml", nc=1, verbose=False).to(device).eval()
    x = torch.rand(1, 3, args.sam_size, args.sam_size, device=device)
    if device.type == "cuda":
        model, x = model.half(), x.half()
    with torch.inference_mode():
        ms = timed_ms(lambda: model(x), args.reps, device)
    return ms, sum(p.numel() for p in model.parameters())


PARTS = ("network", "paths", "decode", "end-to-end", "training", "loader", "torchvision", "fastsam")
# The faster network paths (backbone settings; item 3 of issue 23), each timed against the plain path in one run.
PATHS = [
    ("plain (the default)", {}),
    ("batch 64", {"batch_size": 64}),
    ("batch 128", {"batch_size": 128}),
    ("channels_last: true", {"channels_last": True}),
    ("compile: default", {"compile": "default"}),
    ("compile: reduce-overhead (CUDA graphs)", {"compile": "reduce-overhead"}),
]
SLOW_PATHS = [("compile: max-autotune-no-cudagraphs", {"compile": "max-autotune-no-cudagraphs"})]


def frame_gflop(bb, view: str, smoke: bool) -> float:
    (h, w), t = bb.grid(view), (SMOKE if smoke else VIT_B)
    return vit_gflop(h * w + 5, h * w, bb.patch_size, t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"])


def path_rows(cfg: dict, args, device: torch.device, peak: float | None) -> list[str]:
    """Table rows: ego frames/s of each faster network path, its ratio to the plain path and share of the bf16 peak
    (the settings act on CUDA only: on the CPU every path is the plain one)."""
    rows, plain = [], None
    for name, change in PATHS + (SLOW_PATHS if args.max_autotune else []):
        bb = load_backbone({**cfg, **change}, device)
        batch = change.get("batch_size", args.batch)
        t = time.perf_counter()
        for _ in range(3):  # compiles (and records CUDA graphs) before the timing
            bb.encode(bb.normalize(torch.zeros((batch, *bb.input_size("ego"), 3), dtype=torch.uint8)), "ego")
        sync(device)
        warm = time.perf_counter() - t
        fps = network_fps(bb, "ego", batch, args.reps, device)
        plain = plain or fps
        tflops = fps * frame_gflop(bb, "ego", args.smoke) / 1e3
        share = f"{tflops / peak:.0%}" if peak else "n/a"
        rows.append(f"| {name} | {batch} | {fps:.1f} | {fps / plain:.2f} | {tflops:.1f} | {share} | {warm:.1f} |")
        del bb
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def decode_rows(cfg: dict, take: Path, tmp: Path, args, device: torch.device) -> list[str]:
    """Table rows: extract_features end to end on the ego take with the frames decoded by OpenCV threads and on the
    device (decode: device; the CPU falls back to OpenCV), and the ratio."""
    rows, base = [], None
    for decode in ("cpu", "device"):
        sync(device)
        t = time.perf_counter()
        extract_features(
            annotation_json=take / "annotation.json",
            images_dir=take / "images",
            out_store=tmp / f"decode-{decode}.zarr",
            backbone_cfg={**cfg, "compressor": "none", "decode": decode},
            device=device.type,
            workers=args.workers,
            write_threads=args.write_threads,
        )
        sync(device)
        fps = args.frames / (time.perf_counter() - t)
        base = base or fps
        used = FeatureStore(tmp / f"decode-{decode}.zarr").attrs["decode"]
        rows.append(f"| decode: {decode} | {used} | {args.frames} | {fps:.1f} | {fps / base:.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny network, tiny images, CPU: checks the script runs")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--max-autotune", action="store_true", help="also time compile: max-autotune-no-cudagraphs (minutes)")
    ap.add_argument("--frames", type=int, default=256, help="frames per camera in the end-to-end takes")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10, help="timed batches of the network-only measurement")
    ap.add_argument("--compressors", default="none,zstd", help="store compressors to time end to end")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1), help="JPEG decode threads")
    ap.add_argument("--write-threads", type=int, default=min(8, os.cpu_count() or 1), help="store writer threads")
    ap.add_argument("--train-batch", type=int, default=24)
    ap.add_argument("--loader-batches", type=int, default=20)
    ap.add_argument("--loader-workers", type=int, default=4)
    ap.add_argument("--sam-size", type=int, default=1024)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        ap.error(f"unknown parts {sorted(parts - set(PARTS))}; known: {', '.join(PARTS)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        args.frames, args.batch, args.reps, args.train_batch, args.loader_batches = 4, 2, 1, 4, 2
        args.sam_size, args.loader_workers = 64, 1
    cfg = vit_config(smoke=args.smoke, batch=args.batch, device=device)
    bb = load_backbone(cfg, device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke)"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in card), None)
    d = bb.describe()
    print(f"## gpu_check.py: {card}\n")
    print(
        f"Device: {card}; torch {torch.__version__}; network {d['architecture']} untrained (random weights), "
        f"{d['parameters']:,} parameters, autocast {d['autocast']}, attention {d['attn_implementation']}. "
        f"Command: `benchmarks/gpu_check.sh` (`python benchmarks/gpu_check.py{' --smoke' if args.smoke else ''} "
        f"--parts {args.parts} --frames {args.frames} --batch {args.batch}`); {os.cpu_count()} CPU cores, "
        f"{args.workers} decode threads, {args.write_threads} store writer threads.\n"
    )
    if "network" in parts:
        print("| view | input | GFLOP/frame (formula; quoted) | network frames/s | TFLOP/s | share of bf16 peak |")
        print("|---|---|---|---|---|---|")
        for view in ("ego", "exo"):
            H, W = bb.input_size(view)
            gflop = frame_gflop(bb, view, args.smoke)
            fps = network_fps(bb, view, args.batch, args.reps, device)
            tflops = fps * gflop / 1e3
            share = f"{tflops / peak:.0%}" if peak else "n/a"
            quoted = QUOTED_GFLOP[view] if not args.smoke else "-"
            print(f"| {view} | {H}x{W} | {gflop:.3g}; {quoted} | {fps:.1f} | {tflops:.1f} | {share} |")
        print()
    if "paths" in parts:
        print(
            "| network path (ego, bf16 autocast) | batch | frames/s | x plain | TFLOP/s | share of bf16 peak | "
            "warm-up s (3 batches: compile, graphs) |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(path_rows(cfg, args, device, peak)) + "\n")
    ego, exo = ((48, 48), (36, 64)) if args.smoke else ((704, 704), (540, 960))
    with tempfile.TemporaryDirectory() as tmp:
        takes = {
            f"ego {ego[0]}x{ego[1]} JPEG": write_take(Path(tmp) / "ego", {EGO_CAM: ego}, args.frames),
            f"ego + exo {exo[0]}x{exo[1]} JPEG": write_take(Path(tmp) / "both", {EGO_CAM: ego, EXO_CAM: exo}, args.frames),
        }
        if "decode" in parts:
            print("| extract_features, ego JPEGs, compressor none | decoded by | frames | frames/s | x decode: cpu |")
            print("|---|---|---|---|---|")
            print("\n".join(decode_rows(cfg, takes[f"ego {ego[0]}x{ego[1]} JPEG"], Path(tmp), args, device)) + "\n")
        if "end-to-end" in parts:
            print("| end to end (decode + network + Zarr write) | compressor | frames | frames/s |\n|---|---|---|---|")
            for comp in args.compressors.split(","):
                for name, take in takes.items():
                    n = args.frames * (1 if take.name == "ego" else 2)
                    sync(device)
                    t = time.perf_counter()
                    extract_features(
                        annotation_json=take / "annotation.json",
                        images_dir=take / "images",
                        out_store=Path(tmp) / f"{take.name}-{comp}.zarr",
                        backbone_cfg={**cfg, "compressor": comp},
                        device=device.type,
                        workers=args.workers,
                        backbone=bb,
                        write_threads=args.write_threads,
                    )
                    sync(device)
                    print(f"| {name} | {comp} | {n} | {n / (time.perf_counter() - t):.1f} |")
            print()
        if parts & {"training", "loader"}:
            store_path = Path(tmp) / "train.zarr"
            both = takes[f"ego + exo {exo[0]}x{exo[1]} JPEG"]
            extract_features(
                annotation_json=both / "annotation.json",
                images_dir=both / "images",
                out_store=store_path,
                backbone_cfg={**cfg, "compressor": args.compressors.split(",")[0]},
                device=device.type,
                workers=args.workers,
                backbone=bb,
                write_threads=args.write_threads,
            )
            store = FeatureStore(store_path)
        if "training" in parts:
            step_ms, read_ms, prefetched_ms = training_iteration(store, bb, args, device)
            print(
                f"Training iteration from the store (grids ego {bb.grid('ego')} / exo {bb.grid('exo')}, batch "
                f"{args.train_batch}, 32 candidates, float16 features made float32 on the device; AdamW step): "
                f"**{step_ms:.1f} ms** median, of which the synchronous store read {read_ms:.1f} ms; "
                f"**{prefetched_ms:.1f} ms** with the next batch read meanwhile in a background thread "
                f"(omama.model.batches.Prefetched, the loader of `workers: 0`) (target <= 60 ms; the review: 242 ms on a T4).\n"
            )
        if "loader" in parts:
            print("| training loader, feature batches | workers | batches/s |\n|---|---|---|")
            for workers in sorted({0, args.loader_workers}):
                print(
                    f"| {args.train_batch} exo + {args.train_batch} ego frames per batch | {workers} | "
                    f"{loader_batches_per_s(store, args, workers):.1f} |"
                )
            print()
    if "torchvision" in parts:
        print(
            "| torchvision backbone (stride 16, untrained) | channels | ego input | ego frames/s | exo input | exo frames/s | autocast |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(torchvision_rows(args, device)) + "\n")
    if "fastsam" in parts:
        ms, params = fastsam_ms(args, device)
        print(
            f"FastSAM-x architecture (YOLOv8x-seg, 1 class, untrained, {params / 1e6:.1f} M parameters"
            f"{', fp16' if device.type == 'cuda' else ''}), network forward at {args.sam_size}x{args.sam_size}: "
            f"**{ms:.1f} ms per frame** (batch 1, no mask post-processing).\n"
        )


if __name__ == "__main__":
    main()
