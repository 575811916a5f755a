"""The report's entry: ``build_context`` gathers every section, ``write_report`` renders the template
(templates/report.html.j2) into one self-contained ``report.html``."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from omama.io import atomic_path, read_json, read_parquet
from omama.report import directions
from omama.report.existence import existence_section
from omama.report.figures import breakdown_figure, delta_figure, iou_histogram, timing_figure, training_figure
from omama.report.inputs import Inputs, ReportParams, by_direction, takes_of
from omama.report.overlays import Frames, overlay, pick_samples
from omama.report.sections import (
    change_counts,
    compare_existence,
    compare_iou,
    metrics_table,
    paired_deltas,
    proposal_recall,
    run_summary,
    scored_only_section,
    submission_section,
)
from omama.report.tables import (
    breakdown,
    html_table,
    json_tables,
    load_samples,
    presence_table,
    size_bins,
    visibility_bins,
)

log = logging.getLogger(__name__)


def comparison(main: dict, preds: dict, frames: Frames, a: str, b: str, p: ReportParams) -> dict:
    """Per-sample IoU differences ``b - a`` on the main subset: counts, the figure, the bootstrap
    verdict (``compare_iou``) and overlays of the largest changes."""
    j = paired_deltas(main[a], main[b])
    changes = j.reindex(j["delta"].abs().sort_values(ascending=False, kind="stable").index).head(p.overlays)
    return {
        "a": a,
        "b": b,
        "n": len(j),
        "n_total": len(main[a]),
        "img": delta_figure(j["delta"].to_numpy(), a, b) if len(j) else None,
        **change_counts(j),
        "mean": f"{j.delta.mean():+.4f}" if len(j) else "–",
        **compare_iou(main[a], main[b], j, p.boot),
        "existence": compare_existence(main[a], main[b], p.boot),
        "overlays": [
            {
                "img": overlay(frames, row, [preds[a], preds[b]]),
                "caption": f"take {row.take_uid}, {row.object}, {row.exo_cam}→{row.ego_cam}, frame {row.frame}: "
                f"IoU {a} {row.iou_a:.3f} → {b} {row.iou_b:.3f} (Δ {row.delta:+.3f})",
            }
            for row in changes.itertuples()
        ],
    }


def breakdown_sections(p: ReportParams, files: Inputs, main: dict, visibility: bool) -> list[dict]:
    """The main subset's breakdowns (ego presence, object size, occlusion, scenario) of the scored experiments."""
    breakdowns = []
    presence = presence_table(main, p.boot)
    breakdowns.append(
        {
            "title": "By ego presence",
            "table": html_table(presence, index=False),
            "img": None,
            "note": "Absent objects have no IoU; existence is predicted as confidence > 0.5.",
        }
    )

    def binned(title: str, samples: dict, column: str, figure_title: str) -> dict:
        t, shown = breakdown(samples, column, p.boot)
        return {
            "title": title,
            "table": html_table(shown),
            "img": breakdown_figure(t.drop(columns="n"), figure_title),
            "note": "",
        }

    breakdowns.append(
        binned("By object size (ego mask area, native px, tertiles)", size_bins(main), "size_bin", "IoU by ego object size")
    )
    if visibility:
        occlusion = visibility_bins(main, read_parquet(files.visibility()))
        breakdowns.append(
            binned(
                "By occlusion (synthetic ground-truth visible fraction in ego)",
                occlusion,
                "occlusion",
                "IoU by occlusion level",
            )
        )
    else:
        breakdowns.append(
            {
                "title": "By occlusion",
                "table": "",
                "img": None,
                "note": "This dataset carries no occlusion ground truth; the size breakdown above (visible ego "
                "mask area) stands in for it.",
            }
        )
    breakdowns.append(binned("By scenario", main, "scenario", "IoU by scenario"))
    return breakdowns


def dataset_context(p: ReportParams, root: Inputs, dataset: str, takes: list[str]) -> dict:
    """The sections of a dataset some experiment trains on: run summary, metrics (both directions), existence,
    distributions and comparisons, breakdowns, overlays and split diagnostics of the experiments scored there.
    An experiment's ``split`` below is the one it uses on this dataset."""
    files = root.data(dataset)
    here = {
        n: {**x, "split": p.experiment(n).split_on(dataset), "subsets": p.subsets_on(dataset, n)}
        for n, x in p.evaluated_on(dataset).items()
    }
    both = directions.section(files, here, p.subsets, p.references)
    # the rest reads exo->ego samples
    p = dataclasses.replace(p, experiments=by_direction(here, "exo2ego"))
    split_names = sorted({x["split"] for x in p.experiments.values()})
    split_tables = {s: read_parquet(files.split(s)) for s in split_names}
    split_tables = {s: d[d["direction"] == "exo2ego"] for s, d in split_tables.items()}
    samples = {
        s: {e: load_samples(files.result("samples.parquet", e, s)) for e, x in p.experiments.items() if s in x["subsets"]}
        for s in p.subsets
    }
    preds = {
        s: {
            e: read_json(files.result("predictions.json", e, s), "predictions")
            for e, x in p.experiments.items()
            if s in x["subsets"]
        }
        for s in p.subsets
    }
    frames = Frames(files)
    subset = p.subsets[-1] if "test" not in p.subsets else "test"
    # The sections that read samples show the experiments the main subset scores (not a predict-only one).
    unscored = [e for e in samples[subset] if samples[subset][e].empty]
    all_experiments = p.experiments
    p = dataclasses.replace(p, experiments={e: x for e, x in p.experiments.items() if e not in unscored})
    main = {e: samples[subset][e] for e in p.experiments}

    distributions = [
        {"subset": s, "img": iou_histogram({e: df for e, df in samples[s].items() if e in p.experiments}, s)}
        for s in p.subsets
        if main
    ]
    comparisons = [comparison(main, preds[subset], frames, a, b, p) for a, b in p.compare if a in main and b in main]
    breakdowns = breakdown_sections(p, files, main, dataset in p.visibility) if main else []

    overlays = []
    for name in p.experiments:
        groups = pick_samples(main[name], p.overlays)
        overlays.append(
            {
                "name": name,
                "groups": [
                    {
                        "label": g,
                        "items": [
                            {
                                "img": overlay(frames, row, [preds[subset][name]]),
                                "caption": f"take {row.take_uid}, {row.object}, {row.exo_cam}→{row.ego_cam}, frame {row.frame}: "
                                f"IoU {row.iou:.3f}, confidence {row.confidence:.2f}",
                            }
                            for row in d.itertuples()
                        ],
                    }
                    for g, d in groups.items()
                ],
            }
        )

    splits = [
        dict(zip(("rows", "tables"), json_tables(read_json(files.split_diagnostics(s), "split diagnostics"))), name=s)
        for s in split_names
    ]
    return {
        "name": dataset,
        "summary": run_summary(p, files, dataset, takes, split_tables),
        "metrics": html_table(metrics_table(dataclasses.replace(p, experiments=all_experiments), files, samples), index=False),
        "unscored": unscored,
        "recall": html_table(proposal_recall(p, files, takes), index=False),
        "main_subset": subset,
        "directions": both,
        "distributions": distributions,
        "comparisons": comparisons,
        "breakdowns": breakdowns,
        "overlays": overlays,
        "splits": splits,
        "existence": existence_section(root, p.experiments, subset, main, p.boot),
    }


def training_section(p: ReportParams, files: Inputs) -> tuple[list[dict], str | None]:
    """Each trained experiment's training curve and history, and the time per epoch."""
    training, epoch_times = [], []
    for name, x in p.experiments.items():
        if not x["train"]:
            continue
        h = read_json(files.history(name), "training history")
        training.append(
            {
                "name": name,
                "img": training_figure(name, h) if h else None,
                "table": html_table(pd.DataFrame(h), "{:.4g}", index=False),
            }
        )
        if h and "seconds" in h[0]:
            sec = [e["seconds"] for e in h]
            epoch_times.append(
                {
                    "experiment": name,
                    "features": x["train"]["features"],
                    "epochs": len(sec),
                    "mean s/epoch": float(np.mean(sec)),
                    "total s": float(np.sum(sec)),
                }
            )
    return training, html_table(pd.DataFrame(epoch_times), index=False, floatfmt="{:.2f}") if epoch_times else None


def timing_section(files: Inputs) -> dict:
    """Jobs per rule: count, total, mean and longest wall seconds, peak memory, CPU seconds."""
    jobs = read_parquet(files.timing())
    rules = (
        jobs.groupby("rule")
        .agg(
            jobs=("s", "size"),
            total_s=("s", "sum"),
            mean_s=("s", "mean"),
            max_s=("s", "max"),
            cpu_s=("cpu", "sum"),
            max_rss_mb=("max_rss", "max"),
        )
        .reset_index()
        .sort_values("total_s", ascending=False)
        if len(jobs)
        else pd.DataFrame()
    )
    return {
        "table": html_table(rules, index=False, floatfmt="{:.2f}"),
        "img": timing_figure(rules.rename(columns={"rule": "stage"})) if len(rules) else None,
        "jobs": len(jobs),
    }


def build_context(p: ReportParams, files: Inputs, takes: dict[str, list[str]]) -> dict:
    """The template's context: every section, read from the declared ``files`` (``takes``: each dataset's)."""
    trained_on = p.trained_on()
    scored_only = [d for d in p.datasets_used() if d not in trained_on]
    training, epoch_times = training_section(p, files)
    e2e = by_direction(p.experiments, "exo2ego")
    return {
        "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "bootstrap": {"percent": p.boot.percent, "resamples": p.boot.resamples, "seed": p.boot.seed},
        "datasets": [dataset_context(p, files, d, takes[d]) for d in trained_on],
        "scored_only": [
            scored_only_section(
                dataclasses.replace(p, experiments=by_direction(p.evaluated_on(d), "exo2ego")), files.data(d), d
            )
            for d in scored_only
            if by_direction(p.evaluated_on(d), "exo2ego") and e2e
        ],
        "training": training,
        "epoch_times": epoch_times,
        "submissions": submission_section(p, files),
        "timing": timing_section(files),
    }


def write_report(*, params: dict, inputs: dict[str, list[str]], out: str) -> None:
    """Render ``report.html`` from the report rule's declared ``inputs`` (by kind, as ``report_inputs`` lists
    them, plus ``timing``) and its settings ``params`` (see ``ReportParams``)."""
    p = ReportParams.from_dict(params)
    files = Inputs(p.layout, [f for paths in inputs.values() for f in paths])
    context = build_context(p, files, takes_of(inputs))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("omama.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(**context)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    log.info("wrote %s (%.1f kB)", out, len(html) / 1024)
