"""Candidates of a shared destination, embedded once per distinct source grid (``candidate_embeddings``) against
once per source (the plain expansion it replaced), for a frame's prediction and a cycle-adaptation step.

A frame of the motorcycle pairs has B sources (the objects of one exo photo: one source grid) and N candidate
proposals in the ego photo; the candidates attend to the source grid, so with one grid their embeddings are the
same for every source. Default shapes: the default config's MobileNetV2 (96 channels; grids ego 16x16, exo 12x21),
8 sources, 120 candidates. One run, ratios within the run; the two paths must agree.

    PYTHONPATH=. python benchmarks/shared_destination.py [--sources 8] [--candidates 120] [--repeats 3]
    PYTHONPATH=. python benchmarks/shared_destination.py --smoke     # tiny shapes: checks it runs and agrees
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from omama.model.descriptors import describe
from omama.model.head import MatchingHead, candidate_embeddings


def plain(head, src_feat, dst_feat, src_masks, cand_masks):
    """The candidates embedded once per source (the code before the shared-destination path)."""
    src, dst = head.project(src_feat), head.project(dst_feat)
    B = src.shape[0]
    return head.embeddings(
        describe(src, src_masks)[:, 0], src, describe(dst, cand_masks).expand(B, -1, -1), dst.expand(B, -1, -1, -1)
    )


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's machine type."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def seconds(fn, repeats: int, grad: bool) -> float:
    """Best of ``repeats`` calls of ``fn`` (with a backward pass through the cycle-like loss when ``grad``)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.set_grad_enabled(grad):
            q, t = fn()
            if grad:
                (q[:, 0] @ t[0].T).logsumexp(1).mean().backward()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="2 sources, 6 candidates, small grids: checks it runs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    (ego, exo, channels, size) = ((4, 4), (3, 5), 8, 32) if a.smoke else ((16, 16), (12, 21), 96, 16)
    B, N = (2, 6) if a.smoke else (a.sources, a.candidates)
    head = MatchingHead(exo, ego, in_channels=channels)
    one_grid = torch.randn(1, channels, *exo)
    src_feat, dst_feat = one_grid.expand(B, -1, -1, -1).clone(), torch.randn(1, channels, *ego)
    src_masks = torch.rand(B, 1, exo[0] * size, exo[1] * size) > 0.8
    cand = torch.rand(1, N, ego[0] * size, ego[1] * size) > 0.8
    inputs = (head, src_feat, dst_feat, src_masks, cand)

    with torch.no_grad():
        q0, t0 = plain(*inputs)
        q1, t1 = candidate_embeddings(*inputs)
    diff = max((q0 - q1).abs().max().item(), (t0 - t1).abs().max().item())
    print(f"# {B} sources sharing one grid, {N} candidates, {channels} channels, grids ego {ego} / exo {exo}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch threads {a.threads}, load {os.getloadavg()[0]:.2f}")
    print(f"the two paths agree: max abs difference {diff:.2e}\n")
    print("| part | plain (once per source), s | shared (once per grid), s | ratio |")
    print("|---|---|---|---|")
    for name, grad in (("prediction of a frame (no grad)", False), ("adaptation step (forward + backward)", True)):
        before = seconds(lambda: plain(*inputs), a.repeats, grad)
        after = seconds(lambda: candidate_embeddings(*inputs), a.repeats, grad)
        print(f"| {name} | {before:.3f} | {after:.3f} | {before / after:.1f}x |")


if __name__ == "__main__":
    main()
