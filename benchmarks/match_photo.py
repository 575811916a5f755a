"""``omama match`` on one photo pair: wall time and peak memory of the command as a user runs it (a
fresh process: imports, the backbone, proposals, features, the head), at 640x480 and at 12 MP.

The experiment is the default config's ``untrained`` one (pretrained MobileNetV2 features, the head
at its seeded initial weights, written here as ``train: null`` writes it); the photos are the
Middlebury motorcycle pair (scikit-image) scaled to each size, the exo mask a box on the motorcycle.
With ``--old PATH`` (a checkout of another version, e.g. ``git worktree add /tmp/old main``) each
size is also timed with that code, back to back with this one, and the ratio of the medians shown.

    PYTHONPATH=. python benchmarks/match_photo.py [--repeats 3] [--old /tmp/old] [--sizes 640x480 4032x3024]
    PYTHONPATH=. python benchmarks/match_photo.py --smoke     # 96x72 photos, untrained backbone: checks it runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def experiment(root: Path, smoke: bool) -> Path:
    """A config (results under ``root``) whose ``untrained`` experiment has its head; the config's path."""
    import torch

    from omama.config import validate
    from omama.features.backbones import load_backbone
    from omama.layout import Layout
    from omama.model.setup import build_head
    from omama.model.takedata import Geometry
    from omama.weights import ensure_weights

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["results"] = str(root / "results")
    if smoke:  # no weights file needed
        cfg["backbones"]["mobilenet-v2"]["weights"] = "untrained"
    else:
        ensure_weights("mobilenet_v2", cfg["backbones"]["mobilenet-v2"]["weights"], timeout=30)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))  # only the keys of config.yaml: older versions read it too
    full = validate(yaml.safe_load(path.read_text()))
    backbone = full["backbones"][full["experiments"]["untrained"]["backbone"]]
    geometry = Geometry.from_description(load_backbone(backbone).describe())
    model = Path(Layout(full["results"]).model("untrained"))
    model.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_head(geometry, direction="exo2ego").state_dict(), model)
    return path


def photos(root: Path, width: int, height: int) -> dict[str, Path]:
    """The motorcycle pair at width x height (left: exo, right: ego) and a box mask on the motorcycle."""
    from skimage.data import stereo_motorcycle

    left, right, _ = stereo_motorcycle()
    folder = root / f"{width}x{height}"
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    out = {"exo": folder / "exo.jpg", "ego": folder / "ego.jpg", "mask": folder / "masks" / "bike.exo.png"}
    for view, image in (("exo", left), ("ego", right)):
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out[view]), small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    mask = np.zeros((height, width), np.uint8)
    mask[int(0.3 * height) : int(0.8 * height), int(0.25 * width) : int(0.7 * width)] = 255
    cv2.imwrite(str(out["mask"]), mask)
    return out


def run(code: Path, config: Path, files: dict, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in GiB) of one ``python -m omama.match match`` with ``code`` on PYTHONPATH."""
    cmd = [sys.executable, "-m", "omama.match", "match", "--experiment", "untrained", "--config", str(config)]
    cmd += ["--exo", str(files["exo"]), "--mask", str(files["mask"]), "--ego", str(files["ego"]), "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(code), "TQDM_DISABLE": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"omama match ({code}) failed:\n{stdout.decode()[-2000:]}{stderr.decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 2**20


KEPT = """
import sys, time
from omama.match import Matcher
exo, mask, ego, out = sys.argv[1:5]
matcher = Matcher(experiment="untrained", config="config.yaml")
matcher(exo=exo, mask=mask, ego=ego, out=out)  # the first pair loads the networks
t = time.perf_counter()
matcher(exo=exo, mask=mask, ego=ego, out=out)
print(time.perf_counter() - t)
"""


def kept(config: Path, files: dict, out: Path) -> float:
    """Seconds of a second pair through one ``omama.match.Matcher`` (the networks loaded by the first)."""
    args = [str(files["exo"]), str(files["mask"]), str(files["ego"]), str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-c", KEPT, *args], env=env, cwd=config.parent, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"Matcher failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    return f"{name}, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old", type=Path, default=None, help="a checkout of the code to compare with")
    ap.add_argument("--sizes", nargs="+", default=["640x480", "4032x3024"], help="WxH of the photos")
    ap.add_argument("--smoke", action="store_true", help="96x72 photos, one run, untrained backbone")
    a = ap.parse_args()
    if a.smoke:
        a.repeats, a.sizes = 1, ["96x72"]
    codes = {"this": REPO, **({"old": a.old.resolve()} if a.old else {})}
    with tempfile.TemporaryDirectory(prefix="match_photo-") as tmp:
        root = Path(tmp)
        config = experiment(root, a.smoke)
        load = os.getloadavg()[0]
        rows = []
        for size in a.sizes:
            w, h = map(int, size.split("x"))
            files = photos(root, w, h)
            times = {name: [] for name in codes}
            peaks = {name: 0.0 for name in codes}
            for i in range(a.repeats):
                for name, code in codes.items():  # back to back: both see the same load
                    seconds, peak = run(code, config, files, root / f"out-{name}-{i}.png")
                    times[name].append(seconds)
                    peaks[name] = max(peaks[name], peak)
            second = float(np.median([kept(config, files, root / f"kept-{i}.png") for i in range(a.repeats)]))
            rows.append((size, {n: float(np.median(t)) for n, t in times.items()}, peaks, second))
    print("## match_photo.py: `omama match` on one photo pair\n")
    print(
        f"Machine: {cpu()}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after. Command: `PYTHONPATH=. python "
        f"benchmarks/match_photo.py --repeats {a.repeats}{' --old ' + str(a.old) if a.old else ''} --sizes "
        f"{' '.join(a.sizes)}`. Each run is a fresh process (imports, backbone, proposals, features, head), the median "
        f"of {a.repeats}; the default config's `untrained` experiment (MobileNetV2{' untrained' if a.smoke else ''}, "
        f"classical proposer, robustness.max_side as configured).\n"
    )
    names = list(codes)
    head = " | ".join(f"{n}: s / peak GiB" for n in names) + (" | old / this" if a.old else "")
    print(f"| photos | {head} | this, a second pair through a kept Matcher: s |")
    print("|---|" + "---|" * (len(names) + bool(a.old) + 1))
    for size, t, p, second in rows:
        cells = " | ".join(f"{t[n]:.1f} / {p[n]:.2f}" for n in names) + (f" | {t['old'] / t['this']:.1f}x" if a.old else "")
        print(f"| {size} | {cells} | {second:.1f} |")
    print()


if __name__ == "__main__":
    main()
