"""The report's matplotlib figures, each returned as an inline PNG data URI."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from omama.report.overlays import data_uri  # noqa: E402


def figure_uri(fig) -> str:
    """A matplotlib figure as an inline PNG; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def iou_histogram(samples: dict[str, pd.DataFrame], subset: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    bins = np.linspace(0, 1, 21)
    for name, df in samples.items():
        iou = df.loc[df.ego_present, "iou"]
        if len(iou):
            ax.hist(
                iou,
                bins=bins,
                histtype="step",
                linewidth=1.8,
                weights=np.full(len(iou), 1 / len(iou)),
                label=f"{name} (n={len(iou)}, mean {iou.mean():.3f})",
            )
    ax.set(xlabel="IoU (present objects)", ylabel="share of samples", title=f"IoU distribution, {subset}", xlim=(0, 1))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no sample with the object present in ego", ha="center", transform=ax.transAxes)
    return figure_uri(fig)


def delta_figure(delta: np.ndarray, a: str, b: str) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.hist(delta, bins=np.linspace(-1, 1, 41), color="tab:purple")
    ax1.axvline(0, color="k", linewidth=0.8)
    ax1.set(xlabel=f"IoU({b}) − IoU({a})", ylabel="samples", title="ΔIoU per sample")
    xs = np.concatenate([[-1.0], np.sort(delta), [1.0]])
    ys = np.concatenate([[0.0], np.arange(1, len(delta) + 1) / max(len(delta), 1), [1.0]])
    ax2.step(xs, ys, where="post", color="tab:purple")
    ax2.axvline(0, color="k", linewidth=0.8)
    ax2.set(xlabel="ΔIoU", ylabel="cumulative share", title="Cumulative distribution", xlim=(-1, 1), ylim=(0, 1))
    return figure_uri(fig)


def breakdown_figure(table: pd.DataFrame, title: str) -> str:
    """Grouped bars: rows of ``table`` are groups, columns experiments (mean IoU)."""
    fig, ax = plt.subplots(figsize=(7, 3.0))
    n = max(len(table.columns), 1)
    x = np.arange(len(table.index))
    for i, col in enumerate(table.columns):
        ax.bar(x + (i - (n - 1) / 2) * 0.8 / n, table[col].fillna(0).to_numpy(), width=0.8 / n, label=str(col))
    ax.set_xticks(x, [str(i) for i in table.index], rotation=15, fontsize=8)
    ax.set(ylabel="mean IoU", ylim=(0, 1), title=title)
    ax.legend(fontsize=8)
    return figure_uri(fig)


def training_figure(name: str, history: list[dict]) -> str:
    h = pd.DataFrame(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.0))
    ax1.plot(h["epoch"], h["train_loss"], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss", title=f"{name}: loss")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.plot(h["epoch"], h["val_iou"], marker="o", color="tab:green")
    ax2.set(xlabel="epoch", ylabel="validation IoU", title=f"{name}: validation IoU", ylim=(0, 1))
    return figure_uri(fig)


def timing_figure(stages: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(stages) + 1.0))
    ax.barh(stages["stage"], stages["total_s"], color="tab:blue")
    ax.invert_yaxis()
    ax.set(xlabel="seconds (sum over jobs)", title="Time per stage")
    return figure_uri(fig)
