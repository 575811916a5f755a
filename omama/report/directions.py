"""The report's "both directions" section: exo->ego and ego->exo experiments side by side, each
with the reference predictors of its direction (ego->exo references run on the exo proposals).

The rest of the report (breakdowns, overlays, comparisons, existence) reads exo->ego samples, so it
gets the exo->ego experiments only (``omama.report.inputs.by_direction``).
"""

from __future__ import annotations

import pandas as pd

from omama.io import read_json
from omama.report.inputs import Inputs, by_direction
from omama.report.tables import METRICS, defined, html_table, metric_cells

SHOWN = ("iou", "shape_acc", "location_score", "existence_balanced_acc")
LABELS = {"exo2ego": "exo→ego", "ego2exo": "ego→exo"}


def section(files: Inputs, experiments: dict, subsets: list, references: list) -> dict | None:
    """The side-by-side table (None when the config has no ego->exo experiment), and for each
    ego->exo experiment its IoU over the best reference predictor's."""
    if not by_direction(experiments, "ego2exo"):
        return None
    rows, ratios = [], []
    for direction in ("exo2ego", "ego2exo"):
        for s in subsets:
            exps = {n: x for n, x in by_direction(experiments, direction).items() if s in x["subsets"]}
            best_ref: dict[tuple, float] = {}
            for split, proposer in sorted({(x["split"], x["proposer_name"]) for x in exps.values()}):
                for ref in references:
                    path = files.reference("metrics.json", split, proposer, s, ref, direction)
                    m = read_json(path, "reference metrics")
                    iou = defined(m.get("iou"))
                    best_ref[split, proposer] = max(best_ref.get((split, proposer), 0.0), iou or 0.0)
                    rows.append(_row(direction, s, f"reference: {ref}", split, m, path))
            for name, x in exps.items():
                path = files.result("metrics.json", name, s)
                m = read_json(path, "metrics file")
                rows.append(_row(direction, s, name, x["split"], m, path))
                if direction == "ego2exo" and m.get("scored", True):
                    best = best_ref.get((x["split"], x["proposer_name"]), 0.0)  # no references configured: no ratio
                    iou = defined(m["iou"])  # None: no present sample
                    ratios.append(
                        {
                            "experiment": name,
                            "subset": s,
                            "IoU": "–" if iou is None else f"{iou:.4f}",
                            "best reference IoU": f"{best:.4f}",
                            "ratio": f"{iou / best:.2f}×" if best > 0 and iou is not None else "–",
                        }
                    )
    return {"table": html_table(pd.DataFrame(rows), index=False), "ratios": html_table(pd.DataFrame(ratios), index=False)}


def _row(direction: str, subset: str, predictor: str, split: str, m: dict, path) -> dict:
    cells = metric_cells(m, path)
    return {
        "direction": LABELS[direction],
        "subset": subset,
        "predictor": predictor,
        "split": split,
        **{label: cells[key] for key, label in METRICS if key in SHOWN},
        "n present": m.get("n_present"),
        "n total": m.get("n_total"),
    }
