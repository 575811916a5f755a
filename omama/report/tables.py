"""The report's tables: metric cells with confidence intervals, breakdowns, benchmark timings,
JSON diagnostics as HTML (pandas only, no figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from omama.evaluation.metrics import Bootstrap, ci_key, mean_interval
from omama.io import read_parquet

SAMPLE_KEY = ["take_uid", "object", "exo_cam", "ego_cam", "frame"]

METRICS = [
    ("iou", "IoU ↑"),
    ("iou_std", "IoU std"),
    ("shape_acc", "Shape acc ↑"),
    ("location_score", "Location error ↓"),
    ("existence_balanced_acc", "Existence bal. acc ↑"),
]


def load_samples(path: Path) -> pd.DataFrame:
    df = read_parquet(path)
    df["ego_present"] = df["ego_present"].astype(bool)
    return df


def defined(figure) -> float | None:
    """A metric as a float, None when undefined (``null`` in metrics.json; NaN in files of older versions)."""
    return None if figure is None or not np.isfinite(figure) else float(figure)


def with_ci(point, ci, fmt: str = "{:.4f}") -> str:
    """``0.5090 [0.470, 0.550]``: a metric and its confidence interval ([n/a] when undefined)."""
    if defined(point) is None:
        return "–"
    return fmt.format(point) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else " [n/a]")


def mean_with_ci(d: pd.DataFrame, column: str, boot: Bootstrap) -> str:
    """The mean of ``column`` over the rows of ``d`` with its bootstrap interval over their takes."""
    v = d[column].astype(float)
    return with_ci(float(v.mean()) if len(v) else None, mean_interval(v, d["take_uid"], boot))


SERVER = "scored by the challenge server"


def metric_cells(m: dict, path: Path) -> dict:
    """The report's metric columns of one metrics.json, each with its confidence interval (a subset
    whose destination masks are withheld says it is scored by the challenge server)."""
    if m.get("scored") is False:
        return {k: SERVER for k, _ in METRICS}
    if "bootstrap" not in m:
        raise ValueError(f"metrics file {path} has no confidence intervals (written by an older omama: rerun its evaluation)")
    key = ci_key(m["bootstrap"]["level"])
    cis = m.get(key)
    if not isinstance(cis, dict):
        raise ValueError(f"metrics file {path} lacks {key!r} for its bootstrap level {m['bootstrap']['level']}")
    return {k: with_ci(m.get(k), cis.get(k)) if k in cis else m.get(k) for k, _ in METRICS}


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
            rows.append(
                {
                    "experiment": name,
                    "object in ego": "present" if present else "absent",
                    "n": len(d),
                    "existence correct": mean_with_ci(d, "correct", boot),
                    "mean IoU": mean_with_ci(d, "iou", boot) if present else "–",
                    "mean confidence": mean_with_ci(d, "confidence", boot),
                }
            )
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
    return {name: df.assign(size_bin=pd.cut(df[column], edges, labels=labels)) for name, df in samples.items()}


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


def html_table(df: pd.DataFrame, floatfmt: str = "{:.4f}", index: bool = True) -> str:
    if df is None or df.empty:
        return "<p class='muted'>(no rows)</p>"
    return df.to_html(index=index, float_format=lambda v: floatfmt.format(v), na_rep="–", border=0, classes="tbl", escape=True)


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
            t = pd.DataFrame(
                {
                    "count": {a: len(x) for a, x in v.items()},
                    "items": {a: ", ".join(map(str, x[:12])) + (", …" if len(x) > 12 else "") for a, x in v.items()},
                }
            )
            tables.append({"title": k, "html": html_table(t)})
        else:
            rows.extend(dict_rows({k: v}))
    return rows, tables


def skip_counts(d: dict) -> dict[str, int]:
    """Counted skips in a stage summary: its ``left_out`` / ``skipped`` mapping of reason -> count (or list)."""
    out: dict[str, int] = {}
    for key in ("left_out", "skipped"):
        s = d.get(key, {}) if isinstance(d, dict) else {}
        if isinstance(s, dict):
            for k, v in s.items():
                out[str(k)] = out.get(str(k), 0) + (len(v) if isinstance(v, list) else int(v))
    return out
