"""Two torch jobs side by side on the same cores: OpenMP threads spinning (the default) vs sleeping
(OMP_WAIT_POLICY=PASSIVE, which the workflow sets for its jobs).

Each job is a process running training iterations of the matching head (batch 24, 32 candidates,
the default config's 16x16 / 12x21 grids, 1280 input channels as MobileNetV2) with ``--threads``
torch threads. The setting must be in the environment before the OpenMP runtime loads, so every
measurement starts fresh processes. One run, ratios within the run.

    PYTHONPATH=. python benchmarks/omp_wait.py [--jobs 2] [--threads 2] [--iterations 6]
    PYTHONPATH=. python benchmarks/omp_wait.py --smoke     # one iteration of a small batch: checks it runs
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
B = {batch}
src, dst = torch.randn(B, 1280, 12, 21), torch.randn(B, 1280, 16, 16)
src_m = torch.rand(B, 1, 192, 336) > 0.9
cand = torch.rand(B, 32, 256, 256) > 0.9
target, visible = torch.zeros(B, dtype=torch.long), torch.ones(B)
for _ in range({iterations}):
    loss = matching_loss(score_candidates(head, src, dst, src_m, cand), target, visible)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def run(jobs: int, threads: int, iterations: int, policy: str | None, batch: int = 24) -> float:
    """Seconds until ``jobs`` simultaneous processes have all finished."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    code = WORK.format(threads=threads, iterations=iterations, batch=batch)
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
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--smoke", action="store_true", help="one iteration of a batch of 2: checks that it runs")
    a = ap.parse_args()
    if a.smoke:
        a.jobs, a.iterations, a.batch = 1, 1, 2
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    rows = []
    for jobs in sorted({1, a.jobs}):
        spin = run(jobs, a.threads, a.iterations, None, a.batch)
        sleep = run(jobs, a.threads, a.iterations, "PASSIVE", a.batch)
        rows.append((jobs, spin, sleep))
    print(f"| jobs side by side x {a.threads} threads | default (spin) s | PASSIVE s | default / PASSIVE |")
    print("|---|---|---|---|")
    for jobs, spin, sleep in rows:
        print(f"| {jobs} | {spin:.1f} | {sleep:.1f} | {spin / sleep:.2f} |")


if __name__ == "__main__":
    main()
