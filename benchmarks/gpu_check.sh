#!/usr/bin/env bash
# One prepared GPU check for a machine with one H100/H200, offline, under 8 minutes.
# Runs benchmarks/gpu_check.py (ViT-B/14-reg frames/s vs FLOP floor, end to end with Zarr writes,
# a training iteration at the official grids from stores, the loader's batches/s, FastSAM-x ms
# per 1024-px frame) and prints a Markdown section for benchmarks/RESULTS.md.
#
# The GPU host has only torch, transformers, opencv, numpy and pandas. Everything else comes
# from a folder of wheels named by OMAMA_WHEELS. Fill it on a machine with internet access, for
# the GPU host's Python version and platform (torchvision must match its torch), e.g.:
#
#   pip download -d wheels --no-deps --python-version 3.11 --only-binary=:all: \
#       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
#       zarr numcodecs donfig google-crc32c typing-extensions packaging pyyaml tqdm pillow \
#       jsonschema jsonschema-specifications referencing rpds-py rfc3339-validator jsonpointer \
#       pycocotools lzstring future ultralytics ultralytics-thop ultralytics-platform torchvision==<the host torch's> \
#       matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil six \
#       scipy psutil polars polars-runtime-32 requests urllib3 idna certifi charset-normalizer nvidia-ml-py
#
# Then: OMAMA_WHEELS=/path/to/wheels bash benchmarks/gpu_check.sh   (extra arguments go to gpu_check.py;
# --smoke runs it on CPU at tiny sizes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}  # GPU images often have python3 and no plain python
if [[ -n "${OMAMA_WHEELS:-}" ]]; then
    "$PY" -m pip install --quiet --no-index --find-links "$OMAMA_WHEELS" --no-deps "$OMAMA_WHEELS"/*.whl
fi
"$PY" - <<'PY'
import importlib, sys
modules = ("zarr", "numcodecs", "donfig", "google_crc32c", "yaml", "tqdm", "PIL", "jsonschema", "pycocotools", "lzstring")
missing = [m for m in (*modules, "ultralytics", "torchvision")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules {missing}: set OMAMA_WHEELS to a folder of wheels (see the top of benchmarks/gpu_check.sh)")
PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # omama from this checkout, no install step
export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
timeout 480 "$PY" benchmarks/gpu_check.py "$@"
