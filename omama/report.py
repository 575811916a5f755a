"""The self-contained HTML report: tables, matplotlib figures and mask overlays, inlined.

Everything is read from the results folder by the layout contract in
``workflow/rules/common.smk``; ``report_inputs`` lists the files the report rule waits for.
Images are inlined as base64 PNG, so ``report.html`` opens offline with nothing fetched.
"""

from __future__ import annotations

import dataclasses
import base64
import datetime
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from omama import direction_report  # noqa: E402
from omama.io import atomic_path, read_json  # noqa: E402
from omama.masks import decode_rle, resize_mask  # noqa: E402
from omama.metrics import Bootstrap, difference_interval, mean_interval  # noqa: E402

log = logging.getLogger(__name__)

SAMPLE_KEY = ["take_uid", "object", "exo_cam", "ego_cam", "frame"]
METRICS = [
    ("iou", "IoU ↑"),
    ("iou_std", "IoU std"),
    ("shape_acc", "Shape acc ↑"),
    ("location_score", "Location error ↓"),
    ("existence_balanced_acc", "Existence bal. acc ↑"),
]
COLOURS = {"exo": (255, 140, 0), "gt": (0, 200, 80), "pred": (230, 30, 200), "pred2": (30, 140, 255)}


@dataclass
class ReportParams:
    """Everything the report needs from the config (plain values, passed through ``params:``)."""

    results: str
    source_kind: str
    experiments: dict
    backbones: dict
    proposers: dict
    subsets: list
    references: list
    compare: list = field(default_factory=list)
    overlays: int = 3
    robustness_experiments: list = field(default_factory=list)
    robustness_enabled: bool = False
    motorcycle_enabled: bool = False
    bootstrap: dict = field(default_factory=dict)  # Bootstrap settings: resamples, level, seed

    @property
    def boot(self) -> Bootstrap:
        return Bootstrap(**self.bootstrap)

    @classmethod
    def from_dict(cls, d: dict) -> "ReportParams":
        return cls(**d)


def photo_set_inputs(p: ReportParams, rset: str, pairs: list[str] | None) -> list[str]:
    """The files of one photo-pair set (R/{rset}/) the report reads: experiments, references, annotations."""
    r = f"{p.results}/{rset}"
    proposers = sorted({p.experiments[e]["proposer"] for e in p.robustness_experiments})
    return ([f"{r}/experiments/{e}/test/{f}" for e in p.robustness_experiments
             for f in ("metrics.json", "samples.parquet", "predictions.json")]
            + [f"{r}/reference/take/{q}/test/{ref}/metrics.json" for q in proposers for ref in p.references]
            + [f"{r}/index/takes.json"] + [f"{r}/frames/{t}/annotation.json" for t in pairs or []])


def report_inputs(p: ReportParams, takes: list[str], robustness_pairs: list[str] | None = None,
                  motorcycle_pairs: list[str] | None = None) -> dict[str, list[str]]:
    """The result files the report reads, by kind (the report rule's inputs)."""
    r = p.results
    exps = list(p.experiments)
    out: dict[str, list[str]] = {
        "metrics": [f"{r}/experiments/{e}/{s}/metrics.json" for e in exps for s in p.subsets],
        "samples": [f"{r}/experiments/{e}/{s}/samples.parquet" for e in exps for s in p.subsets],
        "predictions": [f"{r}/experiments/{e}/{s}/predictions.json" for e in exps for s in p.subsets],
        "history": [f"{r}/experiments/{e}/train/history.json" for e in exps if p.experiments[e].get("train")],
        "references": sorted({
            f"{r}/reference/{x['split']}/{x['proposer']}/{s}/{ref}/metrics.json"
            for x in p.experiments.values() for s in p.subsets for ref in p.references
        }),
        "splits": sorted({f"{r}/splits/{x['split']}.json" for x in p.experiments.values()}),
        "split_tables": sorted({f"{r}/splits/{x['split']}.parquet" for x in p.experiments.values()}),
        "recall": sorted({f"{r}/proposals/{x['proposer']}/{t}.recall.parquet" for x in p.experiments.values() for t in takes}),
        "features": sorted({f"{r}/features/{x['backbone']}/{t}.zarr" for x in p.experiments.values() for t in takes}),
        "annotations": [f"{r}/frames/{t}/annotation.json" for t in takes],
        "index": [f"{r}/index/summary.json"],
        "pairs": [f"{r}/pairs.json"],
    }
    if p.source_kind == "synthetic":
        out["visibility"] = [f"{r}/synthetic/visibility.parquet"]
    if p.robustness_enabled:
        out["robustness"] = [f"{r}/robustness/experiments/{e}/test/{f}" for e in p.robustness_experiments
                             for f in ("metrics.json", "samples.parquet", "predictions.json")]
        out["robustness_frames"] = [f"{r}/robustness/index/takes.json"] + [
            f"{r}/robustness/frames/{t}/annotation.json" for t in robustness_pairs or []]
        out["robustness_references"] = [f for f in photo_set_inputs(p, "robustness", []) if "/reference/" in f]
    if p.motorcycle_enabled:
        out["motorcycle"] = photo_set_inputs(p, "motorcycle", motorcycle_pairs)
    out.update(direction_report.inputs(r, p.experiments, p.subsets, p.references))
    return out


# ---------------------------------------------------------------------------- figures


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig) -> str:
    """A matplotlib figure as an inline PNG; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return png_data_uri(buf.getvalue())


def image_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return png_data_uri(buf.getvalue())


def iou_histogram(samples: dict[str, pd.DataFrame], subset: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    bins = np.linspace(0, 1, 21)
    for name, df in samples.items():
        iou = df.loc[df.ego_present, "iou"]
        if len(iou):
            ax.hist(iou, bins=bins, histtype="step", linewidth=1.8, weights=np.full(len(iou), 1 / len(iou)),
                    label=f"{name} (n={len(iou)}, mean {iou.mean():.3f})")
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


# ---------------------------------------------------------------------------- overlays


def blend(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    """Tint ``mask`` in ``colour`` and draw its outline, on a copy of ``rgb``."""
    out = rgb.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = colour
    return out.astype(np.uint8)


def panel_row(panels: list[np.ndarray], height: int = 180) -> np.ndarray:
    """Resize panels to one height and place them side by side with a white gap."""
    scaled = []
    for p in panels:
        w = max(1, round(p.shape[1] * height / p.shape[0]))
        scaled.append(np.asarray(Image.fromarray(p).resize((w, height), Image.BILINEAR)))
        scaled.append(np.full((height, 6, 3), 255, np.uint8))
    return np.concatenate(scaled[:-1], axis=1)


class Frames:
    """Frames, ground truth and predictions of one results tree (main run or robustness set)."""

    def __init__(self, frames_dir: Path):
        self.frames_dir = Path(frames_dir)
        self._ann: dict[str, dict] = {}

    def annotation(self, take: str) -> dict:
        if take not in self._ann:
            self._ann[take] = read_json(self.frames_dir / take / "annotation.json", "annotation file")
        return self._ann[take]

    def image(self, take: str, cam: str, frame: int) -> np.ndarray:
        from omama.features import load_frame  # names take, camera and frame of a missing or damaged image

        return load_frame(self.frames_dir / take / "images" / cam / f"{frame}.jpg", take, cam, frame)

    def mask(self, take: str, obj: str, cam: str, frame: int, shape: tuple[int, int]) -> np.ndarray:
        rle = self.annotation(take)["masks"].get(obj, {}).get(cam, {}).get(str(frame))
        if rle is None:
            return np.zeros(shape, bool)
        return resize_mask(decode_rle(rle), *shape)


def predicted_mask(predictions: dict, row, shape: tuple[int, int]) -> np.ndarray:
    """The submitted mask of one sample, resized to ``shape``; empty if not predicted."""
    take = predictions["exo-ego"]["results"].get(row.take_uid, {})
    entry = take.get("masks", {}).get(row.object, {}).get(f"{row.exo_cam}_{row.ego_cam}", {}).get(str(row.frame))
    if entry is None:
        return np.zeros(shape, bool)
    return resize_mask(decode_rle(entry["pred_mask"]), *shape)


def overlay(frames: Frames, row, preds: list[dict]) -> str:
    """Exo image with the source mask, ego with ground truth, then ego with each prediction."""
    frame = int(row.frame)
    exo = frames.image(row.take_uid, row.exo_cam, frame)
    ego = frames.image(row.take_uid, row.ego_cam, frame)
    panels = [
        blend(exo, frames.mask(row.take_uid, row.object, row.exo_cam, frame, exo.shape[:2]), COLOURS["exo"]),
        blend(ego, frames.mask(row.take_uid, row.object, row.ego_cam, frame, ego.shape[:2]), COLOURS["gt"]),
    ]
    for p, colour in zip(preds, (COLOURS["pred"], COLOURS["pred2"])):
        panels.append(blend(ego, predicted_mask(p, row, ego.shape[:2]), colour))
    return image_uri(panel_row(panels))


def pick_samples(df: pd.DataFrame, n: int) -> dict[str, pd.DataFrame]:
    """Best, median and worst ``n`` present samples by IoU, disjoint (ties broken by the sample key)."""
    d = df[df.ego_present].sort_values(["iou", *SAMPLE_KEY], ascending=[False, True, True, True, True, True])
    if d.empty or n == 0:
        return {}
    best, rest = d.head(n), d.iloc[n:]
    worst, rest = rest.tail(n).iloc[::-1], rest.iloc[:max(0, len(rest) - n)]
    mid = max(0, len(rest) // 2 - n // 2)
    groups = {"best": best, "median": rest.iloc[mid:mid + n], "worst": worst}
    return {k: v for k, v in groups.items() if len(v)}


# ---------------------------------------------------------------------------- tables


def load_samples(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df["ego_present"] = df["ego_present"].astype(bool)
    return df


def with_ci(point, ci, fmt: str = "{:.4f}") -> str:
    """``0.5090 [0.470, 0.550]``: a metric and its confidence interval ([n/a] when undefined)."""
    if point is None or not np.isfinite(point):
        return "–"
    return fmt.format(point) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else " [n/a]")


def mean_with_ci(d: pd.DataFrame, column: str, boot: Bootstrap) -> str:
    """The mean of ``column`` over the rows of ``d`` with its bootstrap interval over their takes."""
    v = d[column].astype(float)
    return with_ci(float(v.mean()) if len(v) else None, mean_interval(v, d["take_uid"], boot))


def breakdown(samples: dict[str, pd.DataFrame], column: str, boot: Bootstrap) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean IoU of present samples per value of ``column`` (rows) and experiment (columns), with counts:
    (numbers, the same shown with bootstrap intervals over takes)."""
    cols, shown = {}, {}
    counts = None
    for name, df in samples.items():
        d = df[df.ego_present & df[column].notna()]
        g = d.groupby(column, observed=True)
        cols[name] = g["iou"].mean()
        shown[name] = pd.Series({k: mean_with_ci(x, "iou", boot) for k, x in g}, dtype=object)
        counts = g.size() if counts is None else counts.combine(g.size(), max, fill_value=0)
    table = pd.DataFrame(cols)
    n = counts.reindex(table.index).fillna(0).astype(int) if counts is not None else 0
    table.insert(0, "n", n)
    display = pd.DataFrame(shown).reindex(table.index).fillna("–")
    display.insert(0, "n", n)
    return table, display


def presence_table(samples: dict[str, pd.DataFrame], boot: Bootstrap) -> pd.DataFrame:
    """Per experiment: how often existence is predicted right, for present and absent objects."""
    rows = []
    for name, df in samples.items():
        for present, d in df.groupby("ego_present"):
            d = d.assign(correct=d["pred_exists"].astype(bool) == bool(present))
            rows.append({
                "experiment": name,
                "object in ego": "present" if present else "absent",
                "n": len(d),
                "existence correct": mean_with_ci(d, "correct", boot),
                "mean IoU": mean_with_ci(d, "iou", boot) if present else "–",
                "mean confidence": mean_with_ci(d, "confidence", boot),
            })
    return pd.DataFrame(rows)


def size_bins(samples: dict[str, pd.DataFrame], column: str = "ego_area", q: int = 3) -> dict[str, pd.DataFrame]:
    """Add a quantile bin label of ``column`` (over present samples of all experiments)."""
    vals = pd.concat([df.loc[df.ego_present, column] for df in samples.values()])
    if vals.nunique() < 2:
        edges = np.array([vals.min() - 0.5, vals.max() + 0.5]) if len(vals) else np.array([0, 1])
    else:
        edges = np.unique(np.quantile(vals, np.linspace(0, 1, q + 1)))
        edges[0] -= 0.5
    labels = [f"{int(lo + 0.5 if i == 0 else lo)}–{int(hi)} px" for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    return {
        name: df.assign(size_bin=pd.cut(df[column], edges, labels=labels)) for name, df in samples.items()
    }


def visibility_bins(samples: dict[str, pd.DataFrame], visibility: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Join the synthetic ego ``visible_fraction`` and bin it into occlusion levels."""
    vis = visibility.rename(columns={"camera": "ego_cam"})[["take_uid", "object", "ego_cam", "frame", "visible_fraction"]]
    edges = [-0.01, 0.25, 0.5, 0.75, 0.999, 1.0]
    labels = ["heavy (<25% visible)", "strong (25–50%)", "partial (50–75%)", "light (75–99.9%)", "none (fully visible)"]
    out = {}
    for name, df in samples.items():
        d = df.merge(vis, on=["take_uid", "object", "ego_cam", "frame"], how="left")
        out[name] = d.assign(occlusion=pd.cut(d["visible_fraction"], edges, labels=labels))
    return out


def benchmark_table(bench_dir: Path) -> pd.DataFrame:
    """Every Snakemake benchmark TSV under ``bench_dir``, one row per job, with its stage (first folder)."""
    rows = []
    for path in sorted(Path(bench_dir).rglob("*.tsv")):
        try:
            b = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ValueError(f"malformed benchmark file {path}: {e}") from e
        if b.empty or "s" not in b.columns:
            raise ValueError(f"malformed benchmark file {path}: no 's' column")
        rel = path.relative_to(bench_dir)
        rows.append({
            "stage": rel.parts[0] if len(rel.parts) > 1 else rel.stem,
            "job": str(rel.with_suffix("")),
            "s": float(b["s"].mean()),
            "max_rss": pd.to_numeric(b.get("max_rss", pd.Series([np.nan])), errors="coerce").max(),
        })
    return pd.DataFrame(rows, columns=["stage", "job", "s", "max_rss"])


def html_table(df: pd.DataFrame, floatfmt: str = "{:.4f}", index: bool = True) -> str:
    if df is None or df.empty:
        return "<p class='muted'>(no rows)</p>"
    return df.to_html(index=index, float_format=lambda v: floatfmt.format(v), na_rep="–", border=0, classes="tbl",
                      escape=True)


def dict_rows(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a nested JSON object into (dotted key, value) rows."""
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(dict_rows(v, key + "."))
        elif isinstance(v, list) and len(v) > 12:
            rows.append((key, f"[{len(v)} items] " + ", ".join(map(str, v[:12])) + ", …"))
        else:
            rows.append((key, str(v)))
    return rows


def json_tables(d: dict) -> tuple[list[tuple[str, str]], list[dict]]:
    """A diagnostics object as key/value rows (scalars) and tables (mappings of mappings or of lists)."""
    rows, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            tables.append({"title": k, "html": html_table(pd.DataFrame.from_dict(v, orient="index"), floatfmt="{:.4g}")})
        elif isinstance(v, dict) and v and all(isinstance(x, list) for x in v.values()):
            t = pd.DataFrame({"count": {a: len(x) for a, x in v.items()},
                              "items": {a: ", ".join(map(str, x[:12])) + (", …" if len(x) > 12 else "") for a, x in v.items()}})
            tables.append({"title": k, "html": html_table(t)})
        else:
            rows.extend(dict_rows({k: v}))
    return rows, tables


# ---------------------------------------------------------------------------- sections


def run_summary(p: ReportParams, r: Path, takes: list[str], split_tables: dict[str, pd.DataFrame]) -> dict:
    skipped: dict[tuple[str, str], int] = {}
    for t in takes:
        ann = read_json(r / "frames" / t / "annotation.json", "annotation file")
        for s in ann.get("skipped", []):
            key = ("extract", str(s.get("reason", "unspecified")))
            skipped[key] = skipped.get(key, 0) + 1
    counts = []
    for split, df in split_tables.items():
        for part in ("train", "val", "test"):
            d = df[df["split"] == part]
            counts.append({
                "split strategy": split, "subset": part, "takes": d["take_uid"].nunique(),
                "frames": len(d[["take_uid", "frame"]].drop_duplicates()),
                "objects": len(d[["take_uid", "object"]].drop_duplicates()),
                "object labels": d["label"].nunique(), "pairs": len(d), "ego present": int(d["ego_present"].sum()),
            })
    backbones = []
    for name in sorted({x["backbone"] for x in p.experiments.values()}):
        cfg = p.backbones[name]
        attrs = feature_attrs(r / "features" / name, takes)
        untrained = cfg.get("weights") == "untrained" or bool(attrs.get("untrained"))
        backbones.append({
            "name": name, "kind": cfg["kind"], "weights": cfg["weights"], "untrained": untrained,
            "attrs": {k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in attrs.items()},
        })
    proposers = [{"name": n, **p.proposers[n]} for n in sorted({x["proposer"] for x in p.experiments.values()})]
    index = read_json(r / "index" / "summary.json", "take index summary") if (r / "index" / "summary.json").exists() else {}
    pairs = read_json(r / "pairs.json", "pairs summary") if (r / "pairs.json").exists() else {}
    for source, d in (("take index", index), ("pairs", pairs)):
        for k, v in skip_counts(d).items():
            skipped[(source, k)] = skipped.get((source, k), 0) + v
    return {
        "source_kind": p.source_kind,
        "counts": html_table(pd.DataFrame(counts), index=False),
        "backbones": backbones,
        "proposers": proposers,
        "index": dict_rows(index),
        "pairs": dict_rows(pairs),
        "skipped": [{"stage": s, "reason": k, "count": v} for (s, k), v in sorted(skipped.items())],
    }


def skip_counts(d: dict) -> dict[str, int]:
    """Counted skips in a stage summary: its ``left_out`` / ``skipped`` mapping of reason -> count (or list)."""
    out: dict[str, int] = {}
    for key in ("left_out", "skipped"):
        s = d.get(key, {}) if isinstance(d, dict) else {}
        if isinstance(s, dict):
            for k, v in s.items():
                out[str(k)] = out.get(str(k), 0) + (len(v) if isinstance(v, list) else int(v))
    return out


def feature_attrs(store_dir: Path, takes: list[str]) -> dict:
    """The backbone description recorded in the first feature store of a backbone."""
    from omama.features import FeatureStore

    for t in takes:
        path = store_dir / f"{t}.zarr"
        if path.exists():
            attrs = FeatureStore(path).attrs
            return {**attrs.get("backbone", {}), "store dtype": attrs.get("dtype")}
    return {}


def proposal_recall(p: ReportParams, r: Path, takes: list[str]) -> pd.DataFrame:
    rows = []
    for name in sorted({x["proposer"] for x in p.experiments.values()}):
        parts = [pd.read_parquet(r / "proposals" / name / f"{t}.recall.parquet").assign(take_uid=t) for t in takes]
        rec = pd.concat(parts) if parts else pd.DataFrame(columns=["take_uid", "best_iou", "n_proposals"])
        rec = rec.assign(**{f"r{q}": rec["best_iou"] >= q for q in (0.5, 0.75)})
        rows.append({
            "proposer": name, "ego masks": len(rec), "mean best IoU (ceiling)": mean_with_ci(rec, "best_iou", p.boot),
            "recall@0.5": mean_with_ci(rec, "r0.5", p.boot), "recall@0.75": mean_with_ci(rec, "r0.75", p.boot),
            "proposals per frame": rec["n_proposals"].mean(),
        })
    return pd.DataFrame(rows)


def metric_cells(m: dict, path: Path) -> dict:
    """The report's metric columns of one metrics.json, each with its confidence interval."""
    if "bootstrap" not in m:
        raise ValueError(f"metrics file {path} has no confidence intervals (written by an older omama: rerun its "
                         f"evaluation)")
    key = Bootstrap(level=m["bootstrap"]["level"]).key
    cis = m.get(key)
    if not isinstance(cis, dict):
        raise ValueError(f"metrics file {path} lacks {key!r} for its bootstrap level {m['bootstrap']['level']}")
    return {k: with_ci(m.get(k), cis.get(k)) if k in cis else m.get(k) for k, _ in METRICS}


def metrics_table(p: ReportParams, r: Path, samples: dict) -> pd.DataFrame:
    rows = []
    for s in p.subsets:
        for name, x in p.experiments.items():
            path = r / "experiments" / name / s / "metrics.json"
            m = read_json(path, "metrics file")
            df = samples[s][name]
            rows.append({
                "subset": s, "predictor": name, "kind": "model", "split": x["split"], "backbone": x["backbone"],
                **metric_cells(m, path), "n present": m.get("n_present"), "n total": m.get("n_total"),
                "ceiling (best proposal IoU)": mean_with_ci(df[df.ego_present], "best_possible_iou", p.boot),
            })
        for split, proposer in sorted({(x["split"], x["proposer"]) for x in p.experiments.values()}):
            for ref in p.references:
                path = r / "reference" / split / proposer / s / ref / "metrics.json"
                m = read_json(path, "reference metrics")
                rows.append({
                    "subset": s, "predictor": f"reference: {ref}", "kind": "reference", "split": split,
                    "backbone": "–", **metric_cells(m, path), "n present": m.get("n_present"),
                    "n total": m.get("n_total"), "ceiling (best proposal IoU)": "–",
                })
    df = pd.DataFrame(rows)
    return df.rename(columns=dict(METRICS))


def robustness_section(p: ReportParams, r: Path, rset: str = "robustness") -> dict | None:
    """Per-pair results and overlays of a photo-pair set (its own results tree under R/{rset})."""
    enabled = p.motorcycle_enabled if rset == "motorcycle" else p.robustness_enabled
    if not enabled or not p.robustness_experiments:
        return None
    rr = r / rset
    frames = Frames(rr / "frames")
    metrics, per_pair, preds, samples = [], None, {}, {}
    for name in p.robustness_experiments:
        d = rr / "experiments" / name / "test"
        m = read_json(d / "metrics.json", "robustness metrics")
        metrics.append({"experiment": name, **metric_cells(m, d / "metrics.json"), "n present": m.get("n_present"),
                        "n total": m.get("n_total")})
        df = load_samples(d / "samples.parquet")
        samples[name] = df
        preds[name] = read_json(d / "predictions.json", "robustness predictions")
        cols = df[["take_uid", "object", "ego_present", "iou", "confidence", "pred_exists"]].rename(
            columns={"take_uid": "pair", "iou": f"IoU {name}", "confidence": f"confidence {name}",
                     "pred_exists": f"predicted present {name}"})
        per_pair = cols if per_pair is None else per_pair.merge(cols, on=["pair", "object", "ego_present"], how="outer")
    for q in sorted({p.experiments[e]["proposer"] for e in p.robustness_experiments}):
        for ref in p.references:
            path = rr / "reference" / "take" / q / "test" / ref / "metrics.json"
            m = read_json(path, "reference metrics")
            metrics.append({"experiment": f"reference: {ref} ({q})", **metric_cells(m, path),
                            "n present": m.get("n_present"), "n total": m.get("n_total")})
    overlays = []
    first = samples[p.robustness_experiments[0]]
    indexed = {n: samples[n].set_index(SAMPLE_KEY) for n in p.robustness_experiments}
    for row in first.sort_values(SAMPLE_KEY).itertuples():
        key = tuple(getattr(row, k) for k in SAMPLE_KEY)
        if row.ego_present:
            outcome = "IoU " + ", ".join(f"{n} {float(d.loc[key, 'iou']):.3f}" for n, d in indexed.items())
        else:
            outcome = "; ".join(f"{n} says {'present' if d.loc[key, 'pred_exists'] else 'absent'} "
                                f"(confidence {float(d.loc[key, 'confidence']):.2f})" for n, d in indexed.items())
        overlays.append({
            "img": overlay(frames, row, [preds[n] for n in p.robustness_experiments[:2]]),
            "caption": f"pair {row.take_uid}, object {row.object} ({'present' if row.ego_present else 'absent'} in ego): {outcome}",
        })
    skipped = [{"pair": t["take_uid"], **s} for t in read_json(rr / "index" / "takes.json", "robustness index")
               for s in frames.annotation(t["take_uid"]).get("skipped", [])]
    legend = " · ".join(f"{c} = prediction of {n}" for c, n in zip(("magenta", "blue"), p.robustness_experiments[:2]))
    return {
        "metrics": html_table(pd.DataFrame(metrics).rename(columns=dict(METRICS)), index=False),
        "pairs": html_table(per_pair.sort_values(["pair", "object"]), index=False, floatfmt="{:.3f}"),
        "overlays": overlays, "legend": legend, "n_pairs": int(first["take_uid"].nunique()),
        "skipped": html_table(pd.DataFrame(skipped), index=False) if skipped else None,
    }


def compare_iou(a: pd.DataFrame, b: pd.DataFrame, joined: pd.DataFrame, boot: Bootstrap) -> dict:
    """The mean IoU difference b - a with its bootstrap interval over takes, and whether it excludes zero.

    Paired (the same scored samples in both): the interval of the mean per-sample difference, the
    same takes drawn for both. Otherwise (e.g. a frame-level against an object-level split) the
    comparison is unpaired: the interval of the difference of the two means, each experiment's
    takes drawn independently.
    """
    paired = set(map(tuple, a[SAMPLE_KEY].to_numpy().tolist())) == set(map(tuple, b[SAMPLE_KEY].to_numpy().tolist()))
    pa, pb = a[a.ego_present], b[b.ego_present]
    if paired:
        diff = float(joined["delta"].mean()) if len(joined) else None
        ci = mean_interval(joined["delta"], joined["take_uid"], boot) if len(joined) else None
    else:
        diff = float(pb["iou"].mean() - pa["iou"].mean()) if len(pa) and len(pb) else None
        ci = difference_interval(pa["iou"], pa["take_uid"], pb["iou"], pb["take_uid"], boot) if diff is not None else None
    if ci is None:
        verdict = "cannot be compared: an experiment has no sample with the object present in ego"
    else:
        distinct = ci[0] > 0 or ci[1] < 0
        verdict = f"the difference is {'' if distinct else 'not '}distinguishable from zero at {boot.percent}"
    return {
        "paired": paired, "diff": "–" if diff is None else f"{diff:+.4f}",
        "ci": "n/a" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]", "verdict": verdict,
        "n_a": len(pa), "n_b": len(pb), "takes_a": int(pa["take_uid"].nunique()), "takes_b": int(pb["take_uid"].nunique()),
    }


def build_context(p: ReportParams, takes: list[str]) -> dict:
    r = Path(p.results)
    split_names = sorted({x["split"] for x in p.experiments.values()})
    split_tables = {s: pd.read_parquet(r / "splits" / f"{s}.parquet") for s in split_names}
    split_tables = {s: d[d["direction"] == "exo2ego"] if "direction" in d else d for s, d in split_tables.items()}
    samples = {s: {e: load_samples(r / "experiments" / e / s / "samples.parquet") for e in p.experiments} for s in p.subsets}
    preds = {s: {e: read_json(r / "experiments" / e / s / "predictions.json", "predictions") for e in p.experiments}
             for s in p.subsets}
    frames = Frames(r / "frames")
    subset = p.subsets[-1] if "test" not in p.subsets else "test"
    main = samples[subset]

    distributions = [{"subset": s, "img": iou_histogram(samples[s], s)} for s in p.subsets]

    comparison = None
    if len(p.compare) == 2:
        a, b = p.compare
        j = main[a].merge(main[b], on=SAMPLE_KEY, suffixes=("_a", "_b"))
        j = j[j.ego_present_a].assign(delta=lambda d: d.iou_b - d.iou_a)
        changes = j.reindex(j["delta"].abs().sort_values(ascending=False, kind="stable").index).head(p.overlays)
        comparison = {
            "a": a, "b": b, "n": len(j), "n_total": len(main[a]),
            "img": delta_figure(j["delta"].to_numpy(), a, b) if len(j) else None,
            "better": int((j.delta > 0).sum()), "worse": int((j.delta < 0).sum()), "same": int((j.delta == 0).sum()),
            "mean": f"{j.delta.mean():+.4f}" if len(j) else "–",
            **compare_iou(main[a], main[b], j, p.boot),
            "overlays": [{
                "img": overlay(frames, row, [preds[subset][a], preds[subset][b]]),
                "caption": f"take {row.take_uid}, {row.object}, {row.exo_cam}→{row.ego_cam}, frame {row.frame}: "
                           f"IoU {a} {row.iou_a:.3f} → {b} {row.iou_b:.3f} (Δ {row.delta:+.3f})",
            } for row in changes.itertuples()],
        }

    breakdowns = []
    presence = presence_table(main, p.boot)
    breakdowns.append({"title": "By ego presence", "table": html_table(presence, index=False), "img": None,
                       "note": "Absent objects have no IoU; existence is predicted as confidence > 0.5."})
    sized = size_bins(main)
    t, shown = breakdown(sized, "size_bin", p.boot)
    breakdowns.append({"title": "By object size (ego mask area, native px, tertiles)", "table": html_table(shown),
                       "img": breakdown_figure(t.drop(columns="n"), "IoU by ego object size"), "note": ""})
    vis_path = r / "synthetic" / "visibility.parquet"
    if p.source_kind == "synthetic" and vis_path.exists():
        t, shown = breakdown(visibility_bins(main, pd.read_parquet(vis_path)), "occlusion", p.boot)
        breakdowns.append({"title": "By occlusion (synthetic ground-truth visible fraction in ego)", "table": html_table(shown),
                           "img": breakdown_figure(t.drop(columns="n"), "IoU by occlusion level"), "note": ""})
    else:
        breakdowns.append({"title": "By occlusion", "table": "", "img": None,
                           "note": "Real data carries no occlusion ground truth; the size breakdown above (visible ego "
                                   "mask area) stands in for it."})
    t, shown = breakdown(main, "scenario", p.boot)
    breakdowns.append({"title": "By scenario", "table": html_table(shown),
                       "img": breakdown_figure(t.drop(columns="n"), "IoU by scenario"), "note": ""})

    training, epoch_times = [], []
    for name, x in p.experiments.items():
        if x.get("train"):
            h = read_json(r / "experiments" / name / "train" / "history.json", "training history")
            training.append({"name": name, "img": training_figure(name, h) if h else None,
                             "table": html_table(pd.DataFrame(h), "{:.4g}", index=False)})
            if h and "seconds" in h[0]:
                sec = [e["seconds"] for e in h]
                epoch_times.append({"experiment": name, "features": x["train"].get("features", "pre-extracted"),
                                    "epochs": len(sec), "mean s/epoch": float(np.mean(sec)), "total s": float(np.sum(sec))})

    overlays = []
    for name in p.experiments:
        groups = pick_samples(main[name], p.overlays)
        overlays.append({"name": name, "groups": [{
            "label": g,
            "items": [{"img": overlay(frames, row, [preds[subset][name]]),
                       "caption": f"take {row.take_uid}, {row.object}, {row.exo_cam}→{row.ego_cam}, frame {row.frame}: "
                                  f"IoU {row.iou:.3f}, confidence {row.confidence:.2f}"} for row in d.itertuples()],
        } for g, d in groups.items()]})

    splits = [dict(zip(("rows", "tables"), json_tables(read_json(r / "splits" / f"{s}.json", "split diagnostics"))), name=s)
              for s in split_names]

    bench = benchmark_table(r / "benchmarks")
    stages = (bench.groupby("stage").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                         max_s=("s", "max"), max_rss_mb=("max_rss", "max"))
              .reset_index().sort_values("total_s", ascending=False)) if len(bench) else pd.DataFrame()

    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": run_summary(p, r, takes, split_tables),
        "metrics": html_table(metrics_table(p, r, samples), index=False),
        "recall": html_table(proposal_recall(p, r, takes), index=False),
        "main_subset": subset,
        "bootstrap": {"percent": p.boot.percent, "resamples": p.boot.resamples, "seed": p.boot.seed},
        "distributions": distributions,
        "comparison": comparison,
        "breakdowns": breakdowns,
        "training": training,
        "epoch_times": html_table(pd.DataFrame(epoch_times), index=False, floatfmt="{:.2f}") if epoch_times else None,
        "overlays": overlays,
        "splits": splits,
        "timing": {"table": html_table(stages, index=False, floatfmt="{:.2f}"),
                   "img": timing_figure(stages) if len(stages) else None, "jobs": len(bench)},
        "robustness": robustness_section(p, r),
        "motorcycle": robustness_section(p, r, "motorcycle"),
    }


def write_report(params: dict, takes: list[str], out: str) -> None:
    """Render ``report.html`` for the results tree described by ``params`` (see ``ReportParams``)."""
    p = ReportParams.from_dict(params)
    directions = direction_report.section(p.results, p.experiments, p.subsets, p.references)
    p = dataclasses.replace(p, experiments=direction_report.by_direction(p.experiments, "exo2ego"))  # the rest reads exo->ego samples
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("omama", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(**build_context(p, takes), directions=directions)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    log.info("wrote %s (%.1f kB)", out, len(html) / 1024)
