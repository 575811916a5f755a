"""The prepared GPU check runs end to end in its CPU smoke mode (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_mode_runs_every_part():
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--smoke"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert text.startswith("## gpu_check.py: CPU (smoke)")
    for part in (
        "| ego | 56x56 |",
        "| exo | 42x70 |",
        "| ego + exo 36x64 JPEG | zstd | 8 |",
        "Training iteration from the store",
        "| 4 exo + 4 ego frames per batch | 1 |",
        "| mobilenet_v2 | 96 | 48x48 |",
        "| resnet50 | 1024 | 48x48 |",
        "FastSAM-x architecture (YOLOv8x-seg, 1 class, untrained, 71.8 M",
    ):
        assert part in text, part
    assert subprocess.run(["bash", "-n", "benchmarks/gpu_check.sh"], cwd=REPO).returncode == 0


@pytest.mark.slow
def test_extract_parts_smoke_mode_times_both_decoders():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "TQDM_DISABLE": "1"}
    out = subprocess.run(
        [sys.executable, "benchmarks/extract_parts.py", "--smoke", "--threads", "1", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Pillow and OpenCV decode identical pixels: True" in out.stdout
    for part in (
        "| decode, OpenCV, 1 / 2 threads |",
        "| network path, copy back: pinned |",
        "| extract_features, Pillow, 1 / 2 threads |",
    ):
        assert part in out.stdout, part
