#!/usr/bin/env bash
# The one prepared GPU check (one H100/H200, offline, about 8 minutes). In one run:
#  1. the rehearsal: config.rehearsal.yaml through Snakemake (the pipeline's own rules, synthetic takes at the release's
#     448-px sizes, ViT-B/14-reg and FastSAM-x untrained, the O-MaMa head trained 3 epochs on the official split) to
#     results-rehearsal/report.html; then benchmarks/rehearsal.py prints per-rule wall times (Snakemake's benchmark
#     files), extraction frames/s, ms per training iteration and the projected Health-subset run with its dominant stage;
#  2. benchmarks/gpu_check.py --parts network,paths,decode: ViT-B/14-reg frames/s against its FLOP floor, the faster
#     network paths (batch 64 / 128, channels-last, torch.compile, CUDA graphs) as ratios to the plain path with their
#     share of the bf16 peak, and extraction with the JPEGs decoded on the GPU against OpenCV.
# Prints Markdown for benchmarks/RESULTS.md.
#
# The GPU host has torch, torchvision, transformers, opencv, numpy, pandas, scipy, scikit-image... but not Snakemake,
# zarr, Ultralytics and a few more: they come from a folder of wheels named by OMAMA_WHEELS, filled beforehand on a
# machine with a package index by `bash benchmarks/gpu_wheels.sh DIR` (Python 3.12 wheels; about 22 MB).
#
#   OMAMA_WHEELS=DIR bash benchmarks/gpu_check.sh [--scale S] [--seconds N] [--workdir DIR] [gpu_check.py arguments]
#   bash benchmarks/gpu_check.sh --smoke          # the same on the CPU at a tiny size (benchmarks/rehearsal-smoke.yaml)
# --scale: the rehearsal's official_scale (default the config's, 0.01: 8 / 2 / 3 takes); --seconds: timestamps per take
# (default 8). Two GPU jobs at a time (--resources gpu=2; the workflow profile's default is 1): the GPU idles while a
# job starts (process, network, CUDA), and those start-ups are most of a per-take job's time at this scale. Time limits: the rehearsal 330 s, gpu_check.py 150 s (REHEARSAL_TIMEOUT, CHECK_TIMEOUT).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}  # GPU images often have python3 and no plain python
SMOKE=0 SCALE="" SECONDS_PER_TAKE="" WORKDIR=$REPO CHECK_ARGS=()
while (($#)); do
    case $1 in
        --smoke) SMOKE=1 ;;
        --scale) SCALE=$2; shift ;;
        --seconds) SECONDS_PER_TAKE=$2; shift ;;
        --workdir) WORKDIR=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
        *) CHECK_ARGS+=("$1") ;;
    esac
    shift
done
if [[ -n "${OMAMA_WHEELS:-}" ]]; then
    "$PY" -m pip install --quiet --no-index --no-deps --find-links "$OMAMA_WHEELS" "$OMAMA_WHEELS"/*.whl
fi
"$PY" - <<'PY'
import importlib.util, sys
modules = ("snakemake", "zarr", "numcodecs", "donfig", "google_crc32c", "yaml", "tqdm", "PIL", "jsonschema", "pycocotools",
           "lzstring", "ijson", "ultralytics", "torchvision", "transformers", "skimage", "jinja2", "matplotlib")
missing = [m for m in modules if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules {missing}: set OMAMA_WHEELS to a folder of wheels (bash benchmarks/gpu_wheels.sh DIR)")
PY
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # omama from this checkout, no install step
export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1

CONFIGS=("$REPO/config.rehearsal.yaml")
CORES=$(nproc)
REHEARSAL_TIMEOUT=${REHEARSAL_TIMEOUT:-330}
if ((SMOKE)); then
    CONFIGS+=("$REPO/benchmarks/rehearsal-smoke.yaml")
    CORES=2
    CHECK_ARGS+=(--smoke)
    REHEARSAL_TIMEOUT=1500  # ViT-B/14 and YOLOv8x-seg start in about a minute per job on two shared cores
fi
if [[ -n "$SCALE$SECONDS_PER_TAKE" ]]; then  # a third config file, merged over the others
    {
        echo "datasets: {rehearsal: {synthetic: {"
        [[ -n "$SCALE" ]] && echo "  official_scale: $SCALE,"
        [[ -n "$SECONDS_PER_TAKE" ]] && echo "  seconds: $SECONDS_PER_TAKE,"
        echo "}}}"
    } > "$WORKDIR/rehearsal-scale.yaml"
    CONFIGS+=("$WORKDIR/rehearsal-scale.yaml")
fi

echo "## gpu_check.sh: the rehearsal through Snakemake"
echo
START=$SECONDS
if ! timeout "$REHEARSAL_TIMEOUT" "$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORKDIR" --cores "$CORES" \
    --scheduler greedy --resources gpu=2 --configfile "${CONFIGS[@]}" -- results-rehearsal/report.html \
    > "$WORKDIR/rehearsal.log" 2>&1; then
    tail -n 40 "$WORKDIR/rehearsal.log"
    echo "the rehearsal failed or ran out of time (log: $WORKDIR/rehearsal.log)" >&2
fi
echo "Command: \`snakemake --configfile ${CONFIGS[*]#"$REPO/"} --cores $CORES --scheduler greedy --resources gpu=2" \
    "results-rehearsal/report.html\`;" \
    "Snakemake's wall time $((SECONDS - START)) s on $CORES cores."
echo
"$PY" benchmarks/rehearsal.py --configfile "${CONFIGS[@]}" --directory "$WORKDIR" || echo "(rehearsal.py: no finished run to summarise)"
echo
timeout "${CHECK_TIMEOUT:-150}" "$PY" benchmarks/gpu_check.py --parts network,paths,decode "${CHECK_ARGS[@]}"
