#!/usr/bin/env bash
# Fill a folder with the wheels benchmarks/gpu_check.sh installs on a GPU host that cannot reach a package index:
# what the omama package, Snakemake and the rehearsal need beyond what the host's image already has.
#   bash benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]      (default Python 3.12, the H200 image's)
# Run it where omama is installed (pip install -e .) and a package index is reachable. Then, on the GPU host:
#   OMAMA_WHEELS=DIR bash benchmarks/gpu_check.sh
#
# The versions are the ones installed here (the dependency closure of snakemake, zarr and omama's other imports the
# image lacks), as wheels for CPython PYTHON_VERSION on manylinux x86-64; a package published only as source (pure
# Python, e.g. connection_pool) is built into a wheel here. Ultralytics comes without its dependencies (it asks for
# opencv-python and torch, which the image has as opencv-python-headless and its own build, and polars, for plots). Packages the image has
# (IMAGE below, from this workplace's list of the H200 image) are left out, so the --no-deps install never replaces them.
set -euo pipefail
DIR=${1:?usage: gpu_wheels.sh DIR [PYTHON_VERSION]}
PYV=${2:-3.12}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
IMAGE="torch torchvision torchaudio triton numpy pandas scipy scikit-image scikit-learn opencv-python-headless pillow
matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil six packaging pyyaml tqdm requests urllib3 idna
certifi charset-normalizer jinja2 markupsafe psutil pyarrow transformers huggingface-hub safetensors tokenizers regex
filelock fsspec typing-extensions networkx sympy mpmath attrs tabulate wrapt setuptools nvidia-ml-py"
"$PY" - "$DIR" "$PYV" "$IMAGE" <<'PY'
import importlib.metadata as md
import re
import subprocess
import sys

from packaging.requirements import Requirement

folder, pyv, image = sys.argv[1], sys.argv[2], set(sys.argv[3].split())
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
marker_env = {"python_version": pyv, "python_full_version": f"{pyv}.0", "sys_platform": "linux", "platform_system": "Linux",
              "platform_machine": "x86_64", "implementation_name": "cpython", "os_name": "posix",
              "platform_python_implementation": "CPython", "extra": ""}
pins, todo = {}, ["snakemake", "zarr", "numcodecs", "google-crc32c", "donfig", "pycocotools", "lzstring", "jsonschema",
                  "ijson"]
while todo:
    name = norm(todo.pop())
    if name in pins:
        continue
    dist = md.distribution(name)
    pins[name] = dist.version
    for r in dist.requires or []:
        req = Requirement(r)
        if not req.marker or req.marker.evaluate(marker_env):
            todo.append(req.name)
for name in ("ultralytics", "ultralytics-thop"):
    pins[name] = md.version(name)
# Left out, to stay well inside the device tool's 64 MiB: pulp (70 MB installed; Snakemake's ILP scheduler, which
# gpu_check.sh does not use: --scheduler greedy) and polars (Ultralytics' plots only, never FastSAM's predictions).
wanted = {n: v for n, v in sorted(pins.items()) if n not in image | {"pulp"}}
platforms = [a for p in ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
                         "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux1_x86_64")
             for a in ("--platform", p)]
download = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", pyv, "--implementation", "cp", *platforms, "-d", folder]
built = []
for name, version in wanted.items():
    if subprocess.run([*download, f"{name}=={version}"], capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", folder, f"{name}=={version}"],
                       check=True)
        built.append(name)
print(f"{len(wanted)} packages (built here from source: {', '.join(built) or 'none'})")
PY
echo "$(find "$DIR" -maxdepth 1 -name '*.whl' | wc -l) wheels in $DIR ($(du -sh "$DIR" | cut -f1))"
