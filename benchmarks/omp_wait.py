"""Two torch jobs side by side on the same cores: OpenMP threads spinning (the default) vs sleeping
(OMP_WAIT_POLICY=PASSIVE, which the workflow sets for its jobs).

Each job is a process running training iterations of the matching head (batch 24, 32 candidates,
the default config's 16x16 / 12x21 grids, 1280 input channels as MobileNetV2) with ``--threads``
torch threads. The setting must be in the environment before the OpenMP runtime loads, so every
measurement starts fresh processes. One run, ratios within the run.

    PYTHONPATH=. python benchmarks/omp_wait.py [--jobs 2] [--threads 2] [--iterations 6]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

WORK = """
import time, torch
from omama.model.head import MatchingHead, matching_loss, score_candidates
torch.set_num_threads({threads})
torch.manual_seed(0)
head = MatchingHead((12, 21), (16, 16), in_channels=1280)
opt = torch.optim.AdamW(head.parameters(), lr=1e-4)
src, dst = torch.randn(24, 1280, 12, 21), torch.randn(24, 1280, 16, 16)
src_m = torch.rand(24, 1, 192, 336) > 0.9
cand = torch.rand(24, 32, 256, 256) > 0.9
target, visible = torch.zeros(24, dtype=torch.long), torch.ones(24)
for _ in range({iterations}):
    loss = matching_loss(score_candidates(head, src, dst, src_m, cand), target, visible)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def run(jobs: int, threads: int, iterations: int, policy: str | None) -> float:
    """Seconds until ``jobs`` simultaneous processes have all finished."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    code = WORK.format(threads=threads, iterations=iterations)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(jobs)]
    if any(p.wait() for p in procs):
        raise SystemExit("a benchmark job failed")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=6)
    a = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    rows = []
    for jobs in (1, a.jobs):
        spin = run(jobs, a.threads, a.iterations, None)
        sleep = run(jobs, a.threads, a.iterations, "PASSIVE")
        rows.append((jobs, spin, sleep))
    print(f"| jobs side by side x {a.threads} threads | default (spin) s | PASSIVE s | default / PASSIVE |")
    print("|---|---|---|---|")
    for jobs, spin, sleep in rows:
        print(f"| {jobs} | {spin:.1f} | {sleep:.1f} | {spin / sleep:.2f} |")


if __name__ == "__main__":
    main()
