"""Every script in benchmarks/ runs at a tiny size (``--smoke``), so a refactor cannot leave one broken.

A new script is picked up by itself: it must take ``--smoke``. No timing is asserted, only that each part
runs and prints its table (and, where a benchmark compares two implementations, that they still agree).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))
# What each smoke run must print; scripts that fetch large weights or take minutes run with the slow set.
EXPECTED = {
    "dag_scale": ["snakemake -n (report.html, 3 takes,"],
    "extract_parts": [
        "Pillow and OpenCV decode identical pixels: True",
        "| decode, OpenCV, 1 / 2 threads |",
        "| network path, copy back: pinned |",
        "| extract_features, Pillow, 1 / 2 threads |",
    ],
    "features_cpu": ["| extract_features end to end (JPEG decode + resize + network + Zarr write), 6 frames"],
    "gpu_check": [
        "## gpu_check.py: CPU (smoke)",
        "| ego | 56x56 |",
        "| exo | 42x70 |",
        "| ego + exo 36x64 JPEG | zstd | 8 |",
        "Training iteration from the store",
        "| 4 exo + 4 ego frames per batch | 1 |",
        "| mobilenet_v2 | 96 | 48x48 |",
        "| resnet50 | 1024 | 48x48 |",
        "FastSAM-x architecture (YOLOv8x-seg, 1 class, untrained, 71.8 M",
    ],
    "match_photo": ["| 96x72 |"],
    # run as gpu_check.sh --smoke (COMMANDS): config.rehearsal.yaml through Snakemake on the CPU at a tiny size, this
    # script's summary of it, and gpu_check.py's parts of the GPU script
    "rehearsal": [
        "## gpu_check.sh: the rehearsal through Snakemake",
        "| features | 3 |",
        "| proposals | 3 |",
        "| train | 1 |",
        "| report | 1 |",
        "Report: report.html written",
        "Dinov2WithRegistersModel (86,583,552 parameters, untrained True)",
        "decoded by opencv, device cpu",
        "ms per iteration** (epochs 2-3)",
        "feature cache: ",
        "Projection of the Health subset (13,000 timestamps, ego + 1 exo = 26,000 frames",
        "Dominant stage: **",
        "| plain (the default) | 2 |",
        "| compile: reduce-overhead (CUDA graphs) | 2 |",
        "| decode: device | opencv | 4 |",
    ],
    "omp_wait": ["| jobs side by side x 2 threads |"],
    "proposals_cpu": ["Proposals per frame:"],
    "proposers_sam": ["| classical |", "| sam |"],
    "shared_destination": ["| prediction of a frame (no grad) |", "| adaptation step (forward + backward) |"],
    "store_io": ["| after: omama.features.shards writer pool | zstd |", "| after: RowArray.read, one call per batch | zstd |"],
    "train_iteration": ["training iteration, on the fly:", "per-mask loop"],
}
ARGS = {"extract_parts": ["--threads", "1", "2"]}
SLOW = {"gpu_check", "proposers_sam", "rehearsal"}  # minutes; MobileSAM's 40 MB checkpoint
COMMANDS = {"rehearsal": lambda tmp: ["bash", "benchmarks/gpu_check.sh", "--smoke", "--workdir", str(tmp)]}


def test_every_benchmark_script_has_a_smoke_check():
    assert set(SCRIPTS) == set(EXPECTED), "give each benchmark script a --smoke mode and its line in EXPECTED"


@pytest.mark.parametrize("script", [pytest.param(s, marks=[pytest.mark.slow] if s in SLOW else []) for s in SCRIPTS])
def test_benchmark_script_runs_at_a_tiny_size(script, request):
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "2", "TQDM_DISABLE": "1"}
    if script == "proposers_sam":  # the session's MobileSAM checkpoint (fetched once by the pipeline's own fetch)
        env["TORCH_HOME"] = str(request.getfixturevalue("mobile_sam_home")[0])
    cmd = [sys.executable, f"benchmarks/{script}.py", "--smoke", *ARGS.get(script, [])]
    if script in COMMANDS:
        cmd, env["PYTHON"] = COMMANDS[script](request.getfixturevalue("tmp_path")), sys.executable
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    for part in EXPECTED[script]:
        assert part in out.stdout, (part, out.stdout[-3000:])
    if script == "gpu_check":
        assert subprocess.run(["bash", "-n", "benchmarks/gpu_check.sh"], cwd=REPO).returncode == 0
    if script == "shared_destination":  # the shared-destination path computes what the plain one did
        assert float(re.search(r"max abs difference ([0-9.e+-]+)", out.stdout).group(1)) < 1e-5, out.stdout
    if script == "train_iteration":  # the per-mask reference loop is the published algorithm: it agrees with describe
        assert float(re.search(r"max abs difference ([0-9.e+-]+)", out.stdout).group(1)) < 1e-4, out.stdout
