"""The report's existence section: for every experiment with ``existence: head``, its test figures with
the head's confidence and, on the same samples, with the published similarity confidence (confusion
matrices, balanced accuracy and IoU with their take-bootstrap intervals), the calibration curve
(predicted confidence vs observed presence, binned) and the calibration fitted on validation."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from omama.evaluation.metrics import Bootstrap, confidence_intervals
from omama.io import read_json
from omama.report.figures import figure_uri
from omama.report.inputs import Inputs
from omama.report.tables import html_table, with_ci

BINS = 10
SOURCES = {"head": "confidence", "similarity": "similarity"}  # confidence from -> samples column


def head_experiments(experiments: dict) -> list[str]:
    return [name for name, x in experiments.items() if x.get("existence") == "head"]


def with_source(samples: pd.DataFrame, source: str) -> pd.DataFrame:
    """The samples with confidence and predicted existence taken from ``source`` (head | similarity)."""
    conf = samples[SOURCES[source]].astype(float)
    return samples.assign(confidence=conf, pred_exists=conf > 0.5)


def confusion(samples: pd.DataFrame) -> dict[str, int]:
    present, predicted = samples["ego_present"].astype(bool), samples["pred_exists"].astype(bool)
    return {
        "present, predicted present": int((present & predicted).sum()),
        "present, predicted absent": int((present & ~predicted).sum()),
        "absent, predicted present": int((~present & predicted).sum()),
        "absent, predicted absent": int((~present & ~predicted).sum()),
    }


def balanced_accuracy(samples: pd.DataFrame) -> float:
    """The mean of the two classes' recalls (NaN unless both classes occur), as scikit-learn's."""
    present, predicted = samples["ego_present"].astype(bool), samples["pred_exists"].astype(bool)
    if present.all() or not present.any():
        return float("nan")
    return float(((present & predicted).sum() / present.sum() + (~present & ~predicted).sum() / (~present).sum()) / 2)


def calibration_curve(samples: pd.DataFrame, bins: int = BINS) -> pd.DataFrame:
    """Per equal-width confidence bin: samples, mean confidence, observed share present."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(samples["confidence"].to_numpy(float), edges[1:-1]), 0, bins - 1)
    df = pd.DataFrame(
        {"bin": which, "confidence": samples["confidence"].astype(float), "present": samples["ego_present"].astype(float)}
    )
    g = df.groupby("bin").agg(n=("present", "size"), mean_confidence=("confidence", "mean"), observed=("present", "mean"))
    g.index = [f"{edges[i]:.1f}–{edges[i + 1]:.1f}" for i in g.index]
    return g


def existence_rows(name: str, subset: str, samples: pd.DataFrame, boot: Bootstrap) -> list[dict]:
    """One table row per confidence source, with intervals from the metrics' take bootstrap."""
    rows = []
    for source in SOURCES:
        s = with_source(samples, source)
        ci = confidence_intervals(s, boot)[boot.key]
        present = s[s.ego_present.astype(bool)]
        rows.append(
            {
                "experiment": name,
                "subset": subset,
                "confidence from": source,
                "existence bal. acc": with_ci(balanced_accuracy(s), ci["existence_balanced_acc"]),
                "IoU": with_ci(float(present.iou.mean()) if len(present) else None, ci["iou"]),
                **confusion(s),
            }
        )
    return rows


def calibration_figure(name: str, curves: dict[str, pd.DataFrame]) -> str:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="perfect calibration")
    for source, c in curves.items():
        ax.plot(c.mean_confidence, c.observed, marker="o", label=source)
        for x, y, n in zip(c.mean_confidence, c.observed, c.n):
            ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.axvline(0.5, color="0.4", lw=0.8)
    ax.set(
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        xlabel="predicted confidence (bin mean)",
        ylabel="observed share present",
        title=f"Calibration, {name}",
    )
    ax.legend(fontsize=8, loc="upper left")
    return figure_uri(fig)


def existence_section(
    files: Inputs, experiments: dict, subset: str, samples: dict[str, pd.DataFrame], boot: Bootstrap
) -> str | None:
    """The section's HTML (None when no experiment uses the existence head); ``samples`` by experiment."""
    names = head_experiments(experiments)
    if not names:
        return None
    parts = [
        "<h2>Existence (ego presence)</h2>",
        f"<p>Experiments with <code>existence: head</code> on the {html.escape(subset)} split: the confidence is "
        "the visibility MLP's calibrated presence probability; the same samples scored with the published "
        "confidence (the sigmoid of the best cosine) are shown beside it. The chosen masks, hence IoU, are the "
        f"matching head's in both. Intervals: {boot.percent} take bootstrap.</p>",
    ]
    rows = []
    for name in names:
        rows += existence_rows(name, subset, samples[name], boot)
    parts.append(html_table(pd.DataFrame(rows), index=False))
    for name in names:
        cal = read_json(files.existence("calibration.json", name), "existence calibration")
        val = cal["validation"]
        curves = {s: calibration_curve(with_source(samples[name], s)) for s in SOURCES}
        fitted = (
            f"confidence = sigmoid({cal['scale']:.4g} · d + {cal['bias']:.4g}), d = logit(present) − "
            f"logit(absent); boundary d = {cal['boundary']:.4g}"
            if val.get("fitted")
            else f"not fitted ({html.escape(str(val.get('reason')))}): the head's own boundary d = 0"
        )
        ba = {
            k: "–" if val.get(k) is None else f"{val[k]:.4f}"
            for k in ("balanced_accuracy", "balanced_accuracy_uncalibrated", "balanced_accuracy_similarity")
        }
        parts += [
            f"<h3>{html.escape(name)}</h3>",
            f"<p>Calibration (validation, {val.get('n', 0)} samples, {val.get('n_absent', 0)} absent): {fitted}. "
            f"Validation balanced accuracy: calibrated {ba['balanced_accuracy']}, uncalibrated "
            f"{ba['balanced_accuracy_uncalibrated']}, similarity {ba['balanced_accuracy_similarity']}.</p>",
            f'<figure><img alt="calibration {html.escape(name)}" src="{calibration_figure(name, curves)}"></figure>',
            html_table(pd.concat(curves, names=["confidence from", "bin"]).reset_index(), "{:.3f}", index=False),
        ]
    return "\n".join(parts)
