"""The report's "both directions" section: exo->ego and ego->exo experiments side by side, each
with the reference predictors of its direction (ego->exo references run on the exo proposals).

Only the section's inputs and content live here; the report hooks them in with a few lines. The
rest of the report (breakdowns, overlays, comparisons) reads exo->ego samples, so it gets the
exo->ego experiments only (:func:`by_direction`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from omama.io import read_json
from omama.metrics import Bootstrap

METRICS = [("iou", "IoU ↑"), ("shape_acc", "Shape acc ↑"), ("location_score", "Location error ↓"),
           ("existence_balanced_acc", "Existence bal. acc ↑")]
LABELS = {"exo2ego": "exo→ego", "ego2exo": "ego→exo"}


def direction_of(x: dict) -> str:
    return x.get("direction", "exo2ego")


def by_direction(experiments: dict, direction: str) -> dict:
    """The experiments of one direction, in config order."""
    return {n: x for n, x in experiments.items() if direction_of(x) == direction}


def reference_metrics(results, x: dict, subset: str, ref: str) -> str:
    """Path of a reference predictor's metrics for experiment settings ``x`` (by direction)."""
    prefix = "ego2exo/" if direction_of(x) == "ego2exo" else ""
    return f"{results}/reference/{prefix}{x['split']}/{x['proposer']}/{subset}/{ref}/metrics.json"


def inputs(results, experiments: dict, subsets: list, references: list) -> dict[str, list[str]]:
    """Files the section reads beyond the main report's: the ego->exo reference metrics."""
    e2x = by_direction(experiments, "ego2exo")
    return {"ego2exo_references": sorted({reference_metrics(results, x, s, ref)
                                          for x in e2x.values() for s in subsets for ref in references})}


def _cell(m: dict, key: str) -> str:
    v = m.get(key)
    if v is None or v != v:
        return "–"
    ci = m.get(Bootstrap(level=m["bootstrap"]["level"]).key, {}).get(key) if "bootstrap" in m else None
    return f"{v:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def section(results, experiments: dict, subsets: list, references: list) -> dict | None:
    """The side-by-side table (None when the config has no ego->exo experiment), and for each
    ego->exo experiment its IoU over the best reference predictor's."""
    r = Path(results)
    if not by_direction(experiments, "ego2exo"):
        return None
    rows, ratios = [], []
    for direction in ("exo2ego", "ego2exo"):
        exps = by_direction(experiments, direction)
        for s in subsets:
            best_ref: dict[tuple, float] = {}
            for split, proposer in sorted({(x["split"], x["proposer"]) for x in exps.values()}):
                x = {"split": split, "proposer": proposer, "direction": direction}
                for ref in references:
                    path = reference_metrics(r, x, s, ref)
                    m = read_json(path, "reference metrics")
                    best_ref[split, proposer] = max(best_ref.get((split, proposer), 0.0), m["iou"] if m["iou"] == m["iou"] else 0.0)
                    rows.append(_row(direction, s, f"reference: {ref}", split, m))
            for name, x in exps.items():
                m = read_json(r / "experiments" / name / s / "metrics.json", "metrics file")
                rows.append(_row(direction, s, name, x["split"], m))
                if direction == "ego2exo":
                    best = best_ref[x["split"], x["proposer"]]
                    ratios.append({"experiment": name, "subset": s, "IoU": f"{m['iou']:.4f}",
                                   "best reference IoU": f"{best:.4f}",
                                   "ratio": f"{m['iou'] / best:.2f}×" if best > 0 else "–"})
    table = pd.DataFrame(rows)
    return {"table": table.to_html(index=False, border=0, classes="tbl", escape=True),
            "ratios": pd.DataFrame(ratios).to_html(index=False, border=0, classes="tbl", escape=True)}


def _row(direction: str, subset: str, predictor: str, split: str, m: dict) -> dict:
    return {"direction": LABELS[direction], "subset": subset, "predictor": predictor, "split": split,
            **{label: _cell(m, key) for key, label in METRICS},
            "n present": m.get("n_present"), "n total": m.get("n_total")}
