"""Classical proposer on synthetic ego frames: best IoU per object (the matching ceiling) and time per frame.

Usage: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/proposals_cpu.py [--takes 4] [--frames 3]
       PYTHONPATH=. python benchmarks/proposals_cpu.py --smoke   # one frame: checks it runs
Uses the synthetic renderer with config.yaml's synthetic and proposers.classical settings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml
from pycocotools import mask as mask_utils

from omama.proposals.proposers import make_proposer, mask_iou
from omama.synthetic.scene import EGO_CAM, MIN_VISIBLE_PIXELS, Take

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--takes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=3, help="annotated ego frames per take")
    ap.add_argument("--smoke", action="store_true", help="one frame of one take")
    args = ap.parse_args()
    if args.smoke:
        args.takes, args.frames = 1, 1
    cfg = yaml.safe_load(open(REPO / "config.yaml"))
    pcfg, syn = cfg["proposers"]["classical"], cfg["datasets"]["tabletop"]["synthetic"]
    proposer = make_proposer(pcfg)
    ious, big, counts, seconds = [], [], [], 0.0
    for i in range(args.takes):
        take = Take(syn, i)
        for f in take.annotated[: args.frames]:
            fr = take.render(EGO_CAM, f)
            gts = [fr.ids == k + 1 for k in range(len(take.objects))]
            gts = [g for g in gts if g.sum() >= MIN_VISIBLE_PIXELS]
            t = time.perf_counter()
            masks, _ = proposer(fr.rgb())
            seconds += time.perf_counter() - t
            counts.append(len(masks))
            enc = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
            for g in gts:
                iou = mask_iou([mask_utils.encode(np.asfortranarray(g.astype(np.uint8)))], enc)
                ious.append(float(iou.max()) if iou.size else 0.0)
                big.append(g.sum() >= pcfg["min_area"] * g.size)
    ious, big = np.array(ious), np.array(big)
    size = syn["ego_size"]
    print("## proposals_cpu.py: classical proposer recall on synthetic ego frames\n")
    print(
        f"Command: `PYTHONPATH=. python benchmarks/proposals_cpu.py --takes {args.takes} --frames {args.frames}`; "
        f"proposer {pcfg}; ego frames {size}x{size}, {len(counts)} frames, {len(ious)} visible objects "
        f"(>= {MIN_VISIBLE_PIXELS} px).\n"
    )
    print("| objects | n | mean best IoU | share best IoU > 0.5 |\n|---|---|---|---|")
    print(f"| all visible | {len(ious)} | {ious.mean():.3f} | {(ious > 0.5).mean():.3f} |")
    print(f"| area >= min_area | {big.sum()} | {ious[big].mean():.3f} | {(ious[big] > 0.5).mean():.3f} |\n")
    print(f"Proposals per frame: mean {np.mean(counts):.1f}; {seconds / len(counts):.2f} s per frame on this CPU.\n")


if __name__ == "__main__":
    main()
