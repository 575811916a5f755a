"""A small results tree in the contracted formats, fabricated for report tests: every file the report rule
declares (``report_inputs``, and the timing table) for given report settings, per dataset, at the paths of
the results layout, so that the tree cannot drift from what the rule declares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from PIL import Image

from omama.data.masks import encode_rle, eval_size, resize_mask
from omama.data.splits import diagnostics
from omama.evaluation.metrics import Bootstrap, summarise
from omama.evaluation.submission import write_submission
from omama.experiment import ALL, experiments
from omama.io import write_json, write_parquet
from omama.layout import DataLayout, Layout
from omama.registry import DATASETS
from omama.report import ReportParams, report_inputs
from omama.report.timing import collect

EGO, EXOS = "aria01_214-1", ["cam01", "cam02"]
EGO_HW, EXO_HW = (48, 48), (36, 64)
FRAMES = [0, 30, 60]
OBJECTS = ["bowl_0", "cup_1"]
PAIRS = ["pairA", "pairB"]  # the photo pairs (one-frame takes) of each dataset experiments are only scored on
PHOTO_EGO, PHOTO_EXO = "ego", "exo"
# (rule, wildcards) of the benchmark patterns of the workflow's rules that the fabricated jobs belong to
RULES = {
    "extract": ("dataset", "take"),
    "features": ("dataset", "backbone", "take"),
    "train": ("exp",),
    "predict": ("exp", "dataset", "subset"),
}


def report_params(config: dict) -> dict:
    """The report rule's params of a validated ``config``, as workflow/rules/common.smk's ``report_params``
    gives them."""
    return dict(
        results=config["results"],
        datasets=config["datasets"],
        experiments={n: x.settings("report") for n, x in experiments(config).items()},
        backbones=config["backbones"],
        proposers=config["proposers"],
        subsets=config["evaluate"]["subsets"],
        references=config["evaluate"]["references"],
        compare=config["report"]["compare"],
        overlays=config["report"]["overlays"],
        bootstrap=dict(config["evaluate"]["bootstrap"], seed=config["evaluate"]["seed"]),
        submissions=config["submissions"],
        visibility=[d for d, c in config["datasets"].items() if DATASETS.get(c["kind"]).visibility],
    )


def declared(p: dict, takes: dict[str, list[str]]) -> dict[str, list[str]]:
    """The inputs the report rule declares for report settings ``p`` and each dataset's ``takes``: those of
    ``report_inputs`` and the timing table."""
    return {**report_inputs(ReportParams.from_dict(p), takes), "timing": [Layout(p["results"]).timing()]}


def patterns(r: Layout) -> dict[str, str]:
    """The benchmark patterns of the fabricated jobs' rules (as the workflow's rules name them)."""
    return {rule: r.benchmark(rule, *wildcards) for rule, wildcards in RULES.items()}


def known(p: ReportParams, takes: dict[str, list[str]]) -> dict[str, list[str]]:
    """The wildcard values of the settings ``p`` (common.smk's ``known_wildcards``)."""
    return {
        "dataset": p.datasets_used(),
        "take": sorted({t for d in p.datasets_used() for t in takes[d]}),
        "exp": list(p.experiments),
        "backbone": list(p.backbones),
        "proposer": list(p.proposers),
        "name": list(p.submissions),
    }


def box_mask(hw, y, x, h, w) -> np.ndarray:
    m = np.zeros(hw, bool)
    m[y : y + h, x : x + w] = True
    return m


def fabricate(root: Path, params: dict, n_takes: int = 2) -> dict[str, list[str]]:
    """Write every file the report reads for the report settings ``params`` (``results`` = ``root``) under
    ``root``: each dataset some experiment trains on as ``n_takes`` multi-camera takes, each dataset they are
    only scored on as the photo pairs ``PAIRS``; benchmark files of a few jobs (and of one of an experiment
    the settings do not know) and the timing table collected from them. Returns each dataset's takes."""
    p = ReportParams.from_dict(params)
    if Path(p.results) != Path(root):
        raise ValueError(f"the settings' results folder {p.results} is not {root}")
    rng = np.random.default_rng(0)
    r = Layout(str(root))
    trained_on = p.trained_on()
    takes = {d: [f"take{i}" for i in range(n_takes)] if d in trained_on else list(PAIRS) for d in p.datasets_used()}
    for dataset in p.datasets_used():
        write_dataset(p, r, dataset, takes[dataset], dataset in trained_on, rng)
    for name, x in p.experiments.items():
        if x["existence"] == "head":
            validation = {
                "fitted": True,
                "n": 12,
                "n_present": 8,
                "n_absent": 4,
                "balanced_accuracy": 0.9,
                "balanced_accuracy_uncalibrated": 0.85,
                "balanced_accuracy_similarity": 0.5,
            }
            write_json(
                r.existence("calibration.json", name), {"scale": 0.5, "bias": 1.5, "boundary": -3.0, "validation": validation}
            )
        if x["train"]:
            write_json(
                r.history(name),
                [{"epoch": e, "train_loss": 3 - e, "val_iou": 0.1 * e, "lr": 1e-4, "seconds": 2.0} for e in (1, 2)],
            )
    for name, blocks in p.submissions.items():
        write_submission(
            predictions={
                d: r.result("predictions.json", exp, p.experiments[exp]["dataset"], "test") for d, exp in blocks.items()
            },
            out=r.submission(name),
        )
    write_timing(p, r, takes, rng)
    inputs = declared(params, takes)
    missing = [f for files in inputs.values() for f in files if not Path(f).exists()]
    if missing:
        raise AssertionError(f"the fixture does not write these declared inputs of the report: {missing}")
    return takes


def write_dataset(p: ReportParams, r: Layout, dataset: str, takes: list[str], trained_on: bool, rng) -> None:
    """One dataset's tree: frames, take index, pairs, splits, feature stores, recall, visibility, and the
    results and reference predictors' files of the experiments scored on it."""
    d = r.data(dataset)
    exps = p.evaluated_on(dataset)
    rows: list[dict] = []
    for ti, take in enumerate(takes):
        if trained_on:
            write_frames(d, take, EGO, EXOS, rng, rows, annotation_split="train" if ti else "test")
        else:
            write_frames(d, take, PHOTO_EGO, [PHOTO_EXO], rng, rows, frames=[0], annotation_split="test")
        for backbone in sorted({x["backbone_name"] for x in exps.values()}):
            zarr.open_group(d.features(backbone, take), mode="w", zarr_format=3).attrs.update(
                {
                    "take_uid": take,
                    "backbone": {
                        "kind": "dinov2",
                        "weights": "untrained",
                        "untrained": True,
                        "grid": {"ego": [8, 8], "exo": [6, 10]},
                    },
                    "dtype": "float16",
                    "frames": FRAMES if trained_on else [0],
                    "cameras": [],
                    "complete": True,
                }
            )
        for proposer in sorted({x["proposer_name"] for x in exps.values()}):
            rec = pd.DataFrame(
                [
                    {
                        "take_uid": take,
                        "object": o,
                        "frame": f,
                        "gt_area": 100,
                        "best_iou": rng.uniform(0.3, 1),
                        "n_proposals": 7,
                    }
                    for o in OBJECTS
                    for f in (FRAMES if trained_on else [0])
                ]
            )
            write_parquet(d.recall(proposer, take), rec)
    pairs = pd.DataFrame(rows)
    write_json(
        d.index(),
        [
            {"take_uid": t, "take_name": f"name_{t}", "annotation_split": s}
            for t, s in dict(zip(pairs.take_uid, pairs.annotation_split)).items()
        ],
    )
    for split in p.splits_on(dataset):
        if split == ALL:  # every row a test row
            s = pairs.assign(split="test")
        else:
            cycle = np.arange(len(pairs)) % 3
            s = pairs.assign(split=np.where(cycle == 0, "train", np.where(cycle == 1, "val", "test")))
        write_parquet(d.split(split), s)
        write_json(d.split_diagnostics(split), diagnostics(s, split, None if split == ALL else [0.7, 0.15, 0.15], 0))
    write_json(
        d.index_summary(),
        {
            "source": d.source(),
            "takes_in_annotations": len(takes) + 1,
            "selected": len(takes),
            "frames": len(pairs[["take_uid", "frame"]].drop_duplicates()),
            "left_out": {"empty object_masks": 1},
            "skipped_takes": [{"take_uid": "t-empty", "take_name": "empty_1", "reason": "empty object_masks"}],
        },
    )
    write_json(
        d.pairs_summary(),
        {
            "pairs": len(pairs),
            "skipped": {"frame not annotated in ego": 2},
            "ego2exo": {"pairs": 0, "skipped": {"ego mask at a frame not annotated in the exo camera": 3}},
        },
    )
    if dataset in p.visibility:
        vis = pairs[["take_uid", "object", "ego_cam", "frame"]].drop_duplicates().rename(columns={"ego_cam": "camera"})
        write_parquet(d.visibility(), vis.assign(visible_fraction=rng.uniform(0, 1, len(vis)), area=100))
    scored = pairs if not trained_on else pairs[np.arange(len(pairs)) % 3 == 2]  # the test rows of the split
    for name, x in exps.items():
        split = p.experiment(name).split_on(dataset)
        for s in p.subsets_on(dataset, name):
            write_experiment(
                lambda f: r.result(f, name, dataset, s), s, scored, pairs, rng, similarity=x["existence"] == "head"
            )
            for ref in p.references:
                path = lambda f: d.reference(f, split, x["proposer_name"], s, ref, x["direction"])
                if not Path(path("metrics.json")).exists():  # experiments sharing split and proposer share them
                    write_experiment(path, s, scored, pairs, rng)


def write_timing(p: ReportParams, r: Layout, takes: dict[str, list[str]], rng) -> None:
    """Benchmark files of a few jobs of the workflow's rules (and one of an experiment the settings do not
    know, which the timing table leaves out), collected into the timing table as the timing rule does."""
    main, scored_only = p.trained_on()[0], [d for d in p.datasets_used() if d not in p.trained_on()]
    backbone = next(iter(p.experiments.values()))["backbone_name"]
    trained = [e for e, x in p.experiments.items() if x["train"]]
    jobs = [("extract", {"dataset": main, "take": t}) for t in takes[main]]
    jobs.append(("features", {"dataset": main, "backbone": backbone, "take": takes[main][0]}))
    jobs += [("train", {"exp": e}) for e in [*trained[:1], "removed-from-the-config"]]
    jobs += [("predict", {"exp": next(iter(p.evaluated_on(d))), "dataset": d, "subset": "test"}) for d in scored_only]
    for rule, wc in jobs:
        path = Path(r.benchmark(rule, *RULES[rule]).format(**wc))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{rng.uniform(1, 9):.4f}\t0:00:01\t120.5\t300.1\t100.0\t101.0\t0.0\t1.0\t50.0\t1.2\n"
        )
    collect(benchmarks=r.benchmarks, patterns=patterns(r), known=known(p, takes), out=r.timing())


def write_frames(
    d: DataLayout, take: str, ego: str, exos: list[str], rng, rows: list, frames=FRAMES, annotation_split: str = "train"
) -> None:
    masks: dict = {}
    annotated: dict = {}
    for cam, hw in [(ego, EGO_HW)] + [(c, EXO_HW) for c in exos]:
        for f in frames:
            img = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
            path = Path(d.image(take, cam, f))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
    for oi, obj in enumerate(OBJECTS):
        masks[obj], annotated[obj] = {}, {}
        for cam, hw in [(ego, EGO_HW)] + [(c, EXO_HW) for c in exos]:
            annotated[obj][cam] = list(frames)
            masks[obj][cam] = {}
            for f in frames:
                if cam == ego and oi == 1 and f == frames[-1] and len(frames) > 1:
                    continue
                if cam == ego and oi == 1 and len(frames) == 1 and take.endswith("B"):
                    continue
                masks[obj][cam][str(f)] = encode_rle(box_mask(hw, 4 + 6 * oi, 5 + 8 * oi, 12, 14))
    write_json(
        d.annotation(take),
        {
            "take_uid": take,
            "take_name": f"name_{take}",
            "scenario": "Cooking" if take.endswith("1") else "Health",
            "parent_scenario": "Cooking",
            "ego_cam": ego,
            "exo_cams": exos,
            "native_size": {ego: list(EGO_HW), **{c: list(EXO_HW) for c in exos}},
            "image_size": {ego: list(EGO_HW), **{c: list(EXO_HW) for c in exos}},
            "subsample_idx": list(frames),
            "masks": masks,
            "annotated_frames": annotated,
            "skipped": [{"object": "lid_2", "camera": exos[0], "frame": 0, "reason": "undecodable mask"}],
        },
    )
    for obj in OBJECTS:
        for exo in exos:
            for f in frames:
                present = str(f) in masks[obj][ego]
                rows.append(
                    {
                        "take_uid": take,
                        "take_name": f"name_{take}",
                        "scenario": "Cooking" if take.endswith("1") else "Health",
                        "parent_scenario": "Cooking",
                        "annotation_split": annotation_split,
                        "object": obj,
                        "label": obj.rsplit("_", 1)[0],
                        "ego_cam": ego,
                        "exo_cam": exo,
                        "frame": f,
                        "direction": "exo2ego",
                        "ego_present": present,
                        "exo_present": True,
                        "exo_area": 168,
                        "ego_area": 168 if present else 0,
                    }
                )


def write_experiment(path, subset: str, s: pd.DataFrame, pairs: pd.DataFrame, rng, similarity: bool = False) -> None:
    """Samples, predictions and metrics of a predictor on the rows ``s`` of ``pairs``, scored as ``subset``;
    ``path(name)``: where file ``name`` goes (``Layout.result`` or ``DataLayout.reference``); ``similarity``:
    the samples of an existence-head experiment (with the published confidence beside the head's)."""
    s = s.assign(split=subset)
    n = len(s)
    iou = np.where(s.ego_present, rng.uniform(0, 1, n), np.nan)
    samples = s[
        ["take_uid", "object", "exo_cam", "ego_cam", "frame", "split", "ego_present", "scenario", "label", "ego_area"]
    ].assign(
        iou=iou,
        shape=iou,
        location=rng.uniform(0, 0.3, n),
        confidence=rng.uniform(0, 1, n),
        pred_exists=rng.uniform(0, 1, n) > 0.5,
        chosen=0,
        best_possible_iou=np.maximum(iou, 0.8),
        n_candidates=7,
    )
    if similarity:
        samples = samples.assign(similarity=rng.uniform(0.5, 0.75, n))
    write_parquet(path("samples.parquet"), samples)
    results: dict = {}
    for r in samples.itertuples():
        hw = EGO_HW
        eh, ew = eval_size(*hw)
        m = resize_mask(box_mask(hw, rng.integers(0, 30), rng.integers(0, 30), 14, 14), eh, ew)
        t = results.setdefault(r.take_uid, {"masks": {}, "subsample_idx": sorted(set(pairs.frame))})
        t["masks"].setdefault(r.object, {}).setdefault(f"{r.exo_cam}_{r.ego_cam}", {})[str(r.frame)] = {
            "pred_mask": encode_rle(m),
            "confidence": float(r.confidence),
        }
    write_json(path("predictions.json"), {"exo-ego": {"version": "xx", "challenge": "correspondence", "results": results}})
    write_json(path("metrics.json"), summarise(samples, bootstrap=Bootstrap(resamples=200, level=0.95, seed=0)))
