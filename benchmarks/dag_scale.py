"""DAG construction time for a full-size selection: ``snakemake -n`` on 1,334 takes.

Writes a local source in the Ego-Exo4D layout with the size of the correspondence
benchmark (1,334 takes; takes.json and relations_{train,val,test}.json with small LZString masks,
empty video files) as the default config's dataset ``tabletop`` (kind local), runs the checkpoints (the real
``take_index`` rule of every dataset the experiments use, so that the whole DAG is known), then times dry runs
of the default target
(report.html), each a fresh ``snakemake`` process as a user runs it.

    OMP_NUM_THREADS=1 python benchmarks/dag_scale.py [--takes 1334] [--repeat 2] [--profile]
    python benchmarks/dag_scale.py --smoke      # 3 takes in a temporary folder: checks that it runs

``--profile`` also writes a cProfile of one dry run (benchmarks/out/dag_scale/dryrun.prof)
and prints its top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omama.data.masks import encode_lzstring  # noqa: E402
from omama.layout import Layout  # noqa: E402

EGO = "aria01_214-1"
EXOS = ["cam01", "cam02", "cam03"]
OBJECTS = 4
FRAMES = 20  # annotated frames per take (one per second)


def mask_pool(rng: np.random.Generator, h: int, w: int, n: int = 64) -> list[str]:
    """``n`` distinct small square masks at size (h, w), LZString-encoded (the take index stores them raw)."""
    pool = []
    for _ in range(n):
        m = np.zeros((h, w), bool)
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        m[y : y + 4, x : x + 4] = True
        pool.append(encode_lzstring(m))
    return pool


def write_source(root: Path, n_takes: int, seed: int = 0) -> None:
    """takes.json + relations_{train,val,test}.json for ``n_takes`` takes, and empty video files (a dry run only
    checks that the local source's videos exist)."""
    rng = np.random.default_rng(seed)
    sizes = {EGO: (32, 32)} | {c: (18, 32) for c in EXOS}
    pools = {cam: mask_pool(rng, *hw) for cam, hw in sizes.items()}
    frames = [30 * i for i in range(FRAMES)]
    takes, relations = [], {"train": {}, "val": {}, "test": {}}
    for i in range(n_takes):
        uid = f"{rng.integers(1 << 62):016x}-{i:05d}"
        name = f"scale_take_{i:05d}"
        videos = {"aria01": {"rgb": {"relative_path": f"frame_aligned_videos/{EGO}.mp4"}}}
        videos |= {c: {"0": {"relative_path": f"frame_aligned_videos/{c}.mp4"}} for c in EXOS}
        takes.append(
            {
                "take_uid": uid,
                "take_name": name,
                "root_dir": f"takes/{name}",
                "task_name": "Cooking",
                "parent_task_name": "Cooking",
                "frame_aligned_videos": videos,
            }
        )
        masks = {}
        for o in range(OBJECTS):
            masks[f"object {o}_{o}"] = {
                cam: {
                    "annotation": {
                        str(f): {"width": w, "height": h, "encodedMask": pools[cam][rng.integers(64)]} for f in frames
                    },
                    "annotated_frames": frames,
                    "annotation_fps": 1,
                }
                for cam, (h, w) in sizes.items()
            }
        for cam in (EGO, *EXOS):  # empty: the dry run only needs the local source's videos to exist
            video = root / "takes" / name / "frame_aligned_videos" / f"{cam}.mp4"
            video.parent.mkdir(parents=True, exist_ok=True)
            video.touch()
        split = "val" if i % 5 == 0 else "test" if i % 5 == 1 else "train"
        relations[split][uid] = {"take_name": name, "scenario": "Cooking", "object_masks": masks}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "takes.json").write_text(json.dumps(takes))
    for split, ann in relations.items():
        (root / "annotations" / f"relations_{split}.json").write_text(json.dumps({"annotations": ann}))


def children_cpu() -> float:
    """User + system CPU seconds of finished child processes."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "1",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--takes", type=int, default=1334)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "dag_scale")
    ap.add_argument("--target", nargs="*", default=[], help="targets of the dry run (default: the workflow's, report.html)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="3 takes, one dry run, in a temporary folder")
    args = ap.parse_args()
    if args.smoke:
        args.takes, args.repeat, args.out = 3, 1, Path(tempfile.mkdtemp(prefix="dag_scale-"))

    work = args.out.resolve()
    source = work / "source"
    takes_json, videos = source / "takes.json", source / "takes"
    if not (takes_json.is_file() and videos.is_dir()) or len(json.loads(takes_json.read_text())) != args.takes:
        t = time.perf_counter()
        write_source(source, args.takes)
        print(f"source: {args.takes} takes written in {time.perf_counter() - t:.1f} s")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["results"] = "results"
    tabletop = cfg["datasets"]["tabletop"]
    cfg["datasets"]["tabletop"] = {
        "kind": "local",
        "path": str(source),
        **{k: tabletop[k] for k in ("selection", "frames", "split")},
    }
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))

    # every dataset the experiments use: their take indexes are checkpoints of the DAG
    used = sorted({d for x in cfg["experiments"].values() for d in [x["dataset"], *(x.get("evaluate_on") or [])]})
    t = time.perf_counter()
    snakemake(work, config, *(Layout(cfg["results"]).data(d).index() for d in used))
    print(f"checkpoints done (take index of {args.takes} takes, datasets {used}): {time.perf_counter() - t:.1f} s")

    times, cpu, jobs = [], [], None
    for _ in range(args.repeat):
        t, c = time.perf_counter(), children_cpu()
        proc = snakemake(work, config, "-n", *args.target)
        times.append(time.perf_counter() - t)
        cpu.append(children_cpu() - c)
        jobs = int(re.search(r"^total\s+(\d+)", proc.stdout, re.M).group(1))
    print(
        f"snakemake -n ({' '.join(args.target) or 'report.html'}, {args.takes} takes, {jobs} jobs): "
        f"wall {min(times):.1f} s best of {len(times)} ({', '.join(f'{x:.1f}' for x in times)}); "
        f"CPU {min(cpu):.1f} s; load average {os.getloadavg()[0]:.1f}"
    )

    if args.profile:
        prof = work / "dryrun.prof"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(prof),
                "-m",
                "snakemake",
                "-s",
                str(REPO / "Snakefile"),
                "--directory",
                str(work),
                "--configfile",
                str(config),
                "--cores",
                "1",
                *args.target,
                "-n",
                "--quiet",
                "all",
            ],
            capture_output=True,
            check=True,
        )
        import pstats

        pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
