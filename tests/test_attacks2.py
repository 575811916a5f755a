"""Second round of attacks (issue 24): nothing overwritten, nothing hangs, nothing silently wrong.

Each test reproduces one defect found by a hostile user (checked to fail before its fix) and the
siblings of its class found since; the section titles carry the defect's number in the issue.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import default_config

from omama.io import write_json
from omama.masks import encode_rle


def strict_json(path):
    """Parse a file as strict JSON: NaN and Infinity are not JSON and are refused."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(open(path).read(), parse_constant=refuse)


# ---------------------------------------------------------------- 11: NaN in metrics.json


def test_metrics_of_a_set_without_present_objects_are_strict_json_with_null(tmp_path):
    from omama.metrics import Bootstrap, write_metrics
    from omama.report.tables import metric_cells

    ego, exo = "aria01", "cam01"
    gt = {
        "version": "xx",
        "challenge": "correspondence",
        "annotations": {
            "take-a": {
                "masks": {"pen_0": {ego: {}, exo: {"0": encode_rle(np.ones((48, 80), bool))}}},
                "subsample_idx": [0],
                "annotated_frames": {"pen_0": {ego: [0], exo: [0]}},
            }
        },
    }
    pred = {"pred_mask": encode_rle(np.zeros((480, 480), bool)), "confidence": 0.2}
    sub = {"exo-ego": {"results": {"take-a": {"masks": {"pen_0": {f"{exo}_{ego}": {"0": pred}}}}}}}
    write_json(tmp_path / "p.json", sub)
    write_json(tmp_path / "g.json", gt)
    write_metrics(tmp_path / "p.json", tmp_path / "g.json", tmp_path / "m.json", bootstrap=Bootstrap(20, 0.95, 0))
    m = strict_json(tmp_path / "m.json")
    assert m["n_present"] == 0 and m["n_total"] == 1
    assert m["iou"] is None and m["shape_acc"] is None and m["ci95"]["iou"] is None
    assert metric_cells(m, tmp_path / "m.json")["iou"] == "–"  # the report shows it as undefined
    # every JSON output goes through the same writer: no figure is ever NaN or inf on disk
    write_json(tmp_path / "x.json", {"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": np.float64("nan")})
    assert strict_json(tmp_path / "x.json") == {"a": [1.0, None], "b": {"c": None}, "d": None}
