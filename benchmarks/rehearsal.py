"""What a rehearsal run (config.rehearsal.yaml through Snakemake) measured, and the Health-subset run it projects.

Reads a finished run's results folder: every job's Snakemake benchmark file (wall seconds per rule), the features and
proposals jobs' logs (frames, and the seconds after their network was loaded), the training history (steps, seconds of
the steps, of which waiting for the loader) and the training log (feature cache or reader). Prints Markdown:

- per-rule wall times (jobs, total, mean, max);
- extraction: frames/s while streaming (ego and exo frames alike) and each job's start-up (process, network, CUDA);
  with ``--peak-tflops`` (gpu_check.sh passes the card's) the share of the dense bf16 peak;
- FastSAM proposals: frames/s and start-up;
- training: ms per iteration (batch, candidates and grids as configured; epochs after the first when there are more);
- the projection of the review's Health subset (13,000 timestamps, ego + one exo, 3 epochs) from these rates, each
  stage's minutes and the dominant one, against the 10-minute goal.

Usage: python benchmarks/rehearsal.py --configfile config.rehearsal.yaml [more config files] [--directory DIR]
Smoke (a tiny CPU run made first, as gpu_check.sh --smoke does): --smoke makes that run in a temporary folder.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from omama.config import validate  # noqa: E402
from omama.experiment import experiments  # noqa: E402
from omama.layout import Layout  # noqa: E402
from omama.report.timing import read_benchmark  # noqa: E402

FEATURES_LINE = re.compile(r"features of take (\S+): (\d+) cameras x (\d+) frames -> .* in ([0-9.]+) s")
PROPOSALS_LINE = re.compile(r"proposals of take (\S+): (\{.*\})")
CACHE_LINE = re.compile(r"(no feature cache: .*|feature cache: .*)")
# The review's Health subset: 13,000 timestamps (30 % of Health's annotated ones), ego + one exo camera, 3 epochs; its
# 20 hours at 2.5 s per iteration on the fly are 28,800 iterations (9,600 per epoch of batch 24).
HEALTH = {"timestamps": 13000, "exo": 1, "iterations": 28800, "takes": 360}
GOAL_MINUTES = 10


def merged_config(files: list[str]) -> dict:
    """The config Snakemake makes of several --configfile files (later ones merged over earlier ones, key by key)."""

    def merge(a: dict, b: dict) -> dict:
        for k, v in b.items():
            a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else copy.deepcopy(v)
        return a

    config: dict = {}
    for f in files:
        config = merge(config, yaml.safe_load(Path(f).read_text()))
    return validate(config)


def rule_times(layout: Layout) -> pd.DataFrame:
    """One row per job: rule (the benchmark file's first folder), job, wall seconds."""
    root = Path(layout.benchmarks)
    jobs = [p.relative_to(root).with_suffix("") for p in sorted(root.rglob("*.tsv"))]
    rows = [{"rule": j.parts[0], "job": str(j), "s": read_benchmark(root / f"{j}.tsv")["s"]} for j in jobs]
    return pd.DataFrame(rows, columns=["rule", "job", "s"])


def log_rows(layout: Layout, rule: str, times: pd.DataFrame) -> pd.DataFrame:
    """The features or proposals jobs: take, frames, streaming seconds (from the log) and wall seconds."""
    wall = dict(zip(times.job, times.s))
    rows = []
    for log in sorted(Path(layout.logs, rule).rglob("*.log")):
        text = log.read_text(errors="replace")
        job = str(log.relative_to(layout.logs).with_suffix(""))
        if rule == "features" and (m := FEATURES_LINE.search(text)):
            frames, seconds = int(m.group(2)) * int(m.group(3)), float(m.group(4))
        elif rule == "proposals" and (m := PROPOSALS_LINE.search(text)):
            summary = ast.literal_eval(m.group(2))
            frames, seconds = summary["frames"] * len(summary["cameras"]), summary["seconds"]
        else:
            continue
        rows.append({"job": job, "frames": frames, "stream_s": seconds, "wall_s": wall.get(job, float("nan"))})
    return pd.DataFrame(rows, columns=["job", "frames", "stream_s", "wall_s"])


def rates(jobs: pd.DataFrame) -> tuple[float, float]:
    """(frames/s while streaming, mean start-up seconds per job)."""
    return jobs.frames.sum() / jobs.stream_s.sum(), float((jobs.wall_s - jobs.stream_s).mean())


def vit_gflop(backbone: dict, view: str) -> float:
    """GFLOP of one frame of a ViT backbone (gpu_check.py's formula) at its grid."""
    from gpu_check import vit_gflop as formula

    h, w = backbone[f"{view}_grid"]
    t = backbone["tiny"]
    registers = 4
    return formula(h * w + 1 + registers, h * w, 14, t["hidden_size"], t["num_hidden_layers"], t["intermediate_size"])


def report(config: dict, directory: Path, health: dict, peak: float | None) -> str:
    layout = Layout(str(directory / config["results"]))
    times = rule_times(layout)
    out = ["| rule | jobs | total s | mean s | max s |", "|---|---|---|---|---|"]
    for rule, g in times.groupby("rule", sort=False):
        out.append(f"| {rule} | {len(g)} | {g.s.sum():.1f} | {g.s.mean():.1f} | {g.s.max():.1f} |")
    out.append(f"| all jobs | {len(times)} | {times.s.sum():.1f} | | |\n")

    x = next(x for x in experiments(config).values() if x.trained)
    backbone, train = x.backbone, x.train
    store = next(Path(layout.data(x.dataset).features(x.backbone_name, "x")).parent.glob("*.zarr"))
    made = json.loads((store / "zarr.json").read_text())["attributes"]
    report_file = Path(layout.report())
    out.append(
        f"Report: {report_file.name} written ({report_file.stat().st_size:,} bytes). Features: "
        f"{made['backbone']['architecture']} ({made['backbone']['parameters']:,} parameters, untrained "
        f"{made['backbone']['untrained']}), inputs ego {made['backbone']['input_size']['ego']} / exo "
        f"{made['backbone']['input_size']['exo']}, decoded by {made['decode']}, device {made['backbone']['device']}, "
        f"autocast {made['backbone']['autocast']}, compile {made['backbone']['compile']}.\n"
    )
    feats, props = log_rows(layout, "features", times), log_rows(layout, "proposals", times)
    fps, feat_start = rates(feats)
    prop_fps, prop_start = rates(props)
    gflop = (vit_gflop(backbone, "ego") + vit_gflop(backbone, "exo")) / 2 if backbone["kind"] == "dinov2" else None
    share = (
        f", {fps * gflop / 1e3:.1f} TFLOP/s = {fps * gflop / 1e3 / peak:.0%} of the dense bf16 peak" if gflop and peak else ""
    )
    out.append(
        f"Extraction ({len(feats)} features jobs, {feats.frames.sum()} frames, ego {backbone['ego_grid']} / exo "
        f"{backbone['exo_grid']} grids, batch {backbone['batch_size']}, decode {backbone['decode']}, device "
        f"{backbone['device']}): **{fps:.1f} frames/s** streaming (ego and exo frames alike{share}); start-up "
        f"{feat_start:.1f} s per job (process, network, device).\n"
    )
    out.append(
        f"Proposals ({len(props)} jobs, {props.frames.sum()} ego frames, {x.proposer['kind']} imgsz "
        f"{x.proposer.get('imgsz')}): **{prop_fps:.1f} frames/s** streaming; start-up {prop_start:.1f} s per job.\n"
    )
    history = json.loads(Path(layout.history(x.name)).read_text())
    steady = history[1:] or history
    ms = 1e3 * sum(h["train_seconds"] for h in steady) / sum(h["steps"] for h in steady)
    wait = 1e3 * sum(h["loader_wait_seconds"] for h in steady) / sum(h["steps"] for h in steady)
    train_log = Path(layout.log("train", "exp").format(exp=x.name)).read_text(errors="replace")
    cache = CACHE_LINE.search(train_log)
    out.append(
        f"Training ({x.name}: {history[0]['steps']} steps per epoch, batch {train['batch_size']}, "
        f"{train['negatives'] + 1} candidates, grids ego {backbone['ego_grid']} / exo {backbone['exo_grid']}): "
        f"**{ms:.1f} ms per iteration** (epochs {steady[0]['epoch']}-{steady[-1]['epoch']}), of which {wait:.1f} ms "
        f"waiting for the loader; {cache.group(1) if cache else 'no feature-cache line in the log'}.\n"
    )
    frames = health["timestamps"] * (1 + health["exo"])
    stages = {
        "extraction": frames / fps + health["takes"] * feat_start,
        "proposals": health["timestamps"] / prop_fps + health["takes"] * prop_start,
        "training": health["iterations"] * ms / 1e3,
    }
    total = sum(stages.values())
    dominant = max(stages, key=stages.get)
    out += [
        f"Projection of the Health subset ({health['timestamps']:,} timestamps, ego + {health['exo']} exo = {frames:,} "
        f"frames, about {health['takes']} takes, {health['iterations']:,} training iterations = 3 epochs), stages one "
        "after another on this device:\n",
        "| stage | from | minutes |",
        "|---|---|---|",
        f"| extraction | {frames:,} frames at {fps:.1f} frames/s + {health['takes']} jobs x {feat_start:.1f} s | "
        f"{stages['extraction'] / 60:.1f} |",
        f"| proposals | {health['timestamps']:,} frames at {prop_fps:.1f} frames/s + {health['takes']} jobs x "
        f"{prop_start:.1f} s | {stages['proposals'] / 60:.1f} |",
        f"| training | {health['iterations']:,} iterations x {ms:.1f} ms | {stages['training'] / 60:.1f} |",
        f"| **total** | | **{total / 60:.1f}** |\n",
        f"Dominant stage: **{dominant}** ({stages[dominant] / total:.0%} of the total). Extraction + 3 epochs: "
        f"{(stages['extraction'] + stages['training']) / 60:.1f} min against the goal of {GOAL_MINUTES} min; targets: "
        f"extraction >= 450 frames/s ({fps:.0f}), training <= 60 ms per iteration ({ms:.0f}).",
    ]
    return "\n".join(out)


SMOKE_FILES = [str(REPO / "config.rehearsal.yaml"), str(REPO / "benchmarks" / "rehearsal-smoke.yaml")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", nargs="+", default=[str(REPO / "config.rehearsal.yaml")], help="as given to snakemake")
    ap.add_argument("--directory", default=".", help="snakemake's working directory (results are relative to it)")
    ap.add_argument(
        "--smoke", action="store_true", help="run the rehearsal on CPU at a tiny size first, in a temporary folder"
    )
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (share of it)")
    for key, value in HEALTH.items():
        ap.add_argument(f"--health-{key}", type=int, default=value, help=f"the Health subset's {key} (default {value})")
    args = ap.parse_args()
    health = {k: getattr(args, f"health_{k}") for k in HEALTH}
    if args.smoke:
        args.configfile, args.directory = SMOKE_FILES, tempfile.mkdtemp(prefix="rehearsal-smoke-")
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", args.directory]
        cmd += ["--cores", "2", "--configfile", *args.configfile, "--", "results-rehearsal/report.html"]
        subprocess.run(cmd, check=True, capture_output=True)
    config = merged_config(args.configfile)
    print(f"## rehearsal.py: {', '.join(Path(f).name for f in args.configfile)}\n")
    print(report(config, Path(args.directory), health, args.peak_tflops or card_peak()))


def card_peak() -> float | None:
    """The dense bf16 peak of this machine's GPU when gpu_check.py knows the card, else None."""
    import torch
    from gpu_check import PEAK_TFLOPS

    card = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((v for k, v in PEAK_TFLOPS.items() if k in card), None)


if __name__ == "__main__":
    main()
