"""The existence (visibility) head: released-format loading, calibration, training, confidence semantics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_model import official_state
from test_train import EGO, EXO, TRAIN, experiment, inputs, predict, train, world  # noqa: F401  (world: the tiny training world fixture)

from omama.config import schema
from omama.data.masks import decode_rle
from omama.model.calibration import Calibration, fit_calibration
from omama.model.choose import ModelChooser
from omama.model.existence import (
    balanced_accuracy,
    class_weights,
    collect_pairs,
    mismatch_partners,
    train_existence,
    train_visibility,
    visibility_loss,
    with_mismatches,
)
from omama.model.head import PRESENT, MatchingHead, load_checkpoint
from omama.model.setup import build_head, setup
from omama.model.takedata import subset_rows

EXISTENCE = {"epochs": 40, "lr": 1e-3, "batch_size": 8, "weight_decay": 0.0, "seed": 0, "mismatches": 1}


def released_mlp_visible(state: dict, x: torch.Tensor) -> torch.Tensor:
    """The published visibility MLP written out from a state dict (Linear-ReLU x3, Linear)."""
    for i in (0, 2, 4, 6):
        x = F.linear(x, state[f"mlp_visible.{i}.weight"], state[f"mlp_visible.{i}.bias"])
        x = torch.relu(x) if i < 6 else x
    return x


@pytest.mark.parametrize("src_grid,dst_grid", [((38, 68), (50, 50)), ((50, 50), (38, 68))], ids=["exo2ego", "ego2exo"])
def test_released_state_dict_loads_strictly_with_and_without_the_existence_head(tmp_path, src_grid, dst_grid):
    state = official_state(dst_rows=dst_grid[0] * dst_grid[1], src_rows=src_grid[0] * src_grid[1])
    torch.save(state, tmp_path / "released.pt")
    head = load_checkpoint(MatchingHead(src_grid=src_grid, dst_grid=dst_grid), tmp_path / "released.pt").eval()
    assert all(torch.equal(head.state_dict()[k], v) for k, v in state.items())
    torch.manual_seed(0)
    src_desc, dst_desc = torch.randn(2, 1536), torch.randn(2, 3, 1536)
    src, dst = torch.randn(2, 768, *src_grid), torch.randn(2, 768, *dst_grid)
    with torch.no_grad():
        q, t = head.embeddings(src_desc, src, dst_desc, dst)
        scores = head(src_desc, src, dst_desc, dst)  # similarity: the cosine, as published
        best = scores.argmax(1)
        logits = head.visibility(q[:, 0], t[torch.arange(2), best])  # head: the released mlp_visible
    assert torch.equal(scores, (q * t).sum(-1)) and q.shape == (2, 1, 768) and t.shape == (2, 3, 768)
    assert torch.allclose(logits, released_mlp_visible(state, torch.cat([q[:, 0], t[torch.arange(2), best]], -1)))
    wrong = MatchingHead(src_grid=dst_grid, dst_grid=src_grid)  # the other direction's geometry: refused
    with pytest.raises(ValueError, match="pos_embed_T"):
        load_checkpoint(wrong, tmp_path / "released.pt")


def gaussian_logits(n_present: int, n_absent: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logit differences with unit-variance normal classes at +3 (present) and -1 (absent): at equal
    priors the classes are equally likely at d = 1, with log-likelihood ratio 4 d - 4."""
    rng = np.random.default_rng(seed)
    d = np.concatenate([rng.normal(3, 1, n_present), rng.normal(-1, 1, n_absent)])
    return d, np.arange(len(d)) < n_present


def test_calibration_puts_the_boundary_where_the_validation_data_says():
    d, present = gaussian_logits(2000, 200, seed=0)  # imbalanced like the benchmark: mostly present
    cal, info = fit_calibration(d, present)
    assert info["fitted"] and info["n_present"] == 2000 and info["n_absent"] == 200
    assert cal.boundary == pytest.approx(1.0, abs=0.15)  # a plain (unweighted) fit would sit near 1 - ln(10)/4 = 0.42
    assert cal.scale == pytest.approx(4.0, rel=0.2) and cal.bias == pytest.approx(-4.0, rel=0.25)
    conf = 1 / (1 + np.exp(-(cal.scale * d + cal.bias)))
    best = max(balanced_accuracy(present, d > b) for b in np.linspace(-1, 3, 401))
    assert balanced_accuracy(present, conf > 0.5) >= best - 0.01
    logits = torch.tensor([[0.0, cal.boundary], [0.0, cal.boundary + 1], [0.0, cal.boundary - 1]])
    if PRESENT == 0:
        logits = logits.flip(-1)
    p = cal.probability(logits)
    assert p[0] == pytest.approx(0.5, abs=1e-6) and p[1] > 0.5 > p[2]
    shifted, _ = fit_calibration(d + 2.5, present)  # the boundary follows the data
    assert shifted.boundary == pytest.approx(cal.boundary + 2.5, abs=0.05)


def test_calibration_needs_both_classes_and_stays_finite_on_separable_data():
    cal, info = fit_calibration(np.array([0.3, 1.2, 2.0]), np.array([True, True, True]))
    assert cal == Calibration() and not info["fitted"] and "both classes" in info["reason"]
    cal, info = fit_calibration(np.array([-3.0, -2.0, 2.0, 4.0]), np.array([False, False, True, True]))
    assert info["fitted"] and np.isfinite(cal.scale) and -2.0 < cal.boundary < 2.0


def test_training_the_existence_head_reduces_its_loss_and_touches_nothing_else():
    torch.manual_seed(0)
    head = MatchingHead(src_grid=(2, 2), dst_grid=(2, 2))
    before = {k: v.clone() for k, v in head.state_dict().items()}
    x = F.normalize(torch.randn(96, 2, 768), dim=-1).flatten(1)  # (source, best candidate) pairs
    present = (x[:, :768] * x[:, 768:]).sum(-1) > -0.01  # presence: a function of the pair, imbalanced
    w = class_weights(present)
    assert w[PRESENT] * present.sum() == pytest.approx(w[1 - PRESENT] * (~present).sum())
    with torch.no_grad():
        start = visibility_loss(head, x, present, w).item()
    history = train_visibility(head, x, present, epochs=30, lr=1e-3, batch_size=16, weight_decay=0.0, seed=0, mismatches=0)
    with torch.no_grad():
        end = visibility_loss(head, x, present, w).item()
    assert end < 0.5 * start and history[-1]["train_loss"] < history[0]["train_loss"]
    after = head.state_dict()
    assert all(torch.equal(after[k], v) == (not k.startswith("mlp_visible.")) for k, v in before.items())
    assert all(p.requires_grad for p in head.parameters())


def test_existence_head_predictions_keep_masks_and_carry_the_calibrated_confidence(world, tmp_path):  # noqa: F811
    train(world, tmp_path / "exp", cfg={**TRAIN, "epochs": 1})
    exp, ex = tmp_path / "exp", tmp_path / "exp" / "existence"
    assert EXISTENCE.keys() == schema()["definitions"]["existence_train"]["properties"].keys()  # every setting given
    record = train_existence(
        experiment(None, existence="head", existence_train=EXISTENCE),
        inputs(world, model=str(exp / "model.pt")),
        model_out=ex / "model.pt",
        calibration_out=ex / "calibration.json",
        history_out=ex / "history.json",
    )
    assert json.loads((ex / "calibration.json").read_text()) == json.loads(json.dumps(record))
    assert record["validation"]["fitted"] and record["validation"]["n"] == 9 and record["validation"]["n_absent"] == 1
    assert record["train"] == {"n": 15, "n_present": 14, "skipped_no_proposals": 0}
    history = json.loads((ex / "history.json").read_text())
    assert len(history) == EXISTENCE["epochs"] and history[-1]["train_loss"] < history[0]["train_loss"]
    matching, trained = torch.load(exp / "model.pt"), torch.load(ex / "model.pt")
    assert set(matching) == set(trained)
    assert all(torch.equal(matching[k], v) != k.startswith("mlp_visible.") for k, v in trained.items())

    def predicted(name, model, calibration=None):
        out = tmp_path / name
        metrics = predict(world, model, out, calibration)
        return metrics, pd.read_parquet(out / "samples.parquet"), json.loads((out / "predictions.json").read_text())

    m_sim, s_sim, _ = predicted("similarity", exp / "model.pt")
    m_head, s_head, sub = predicted("head", ex / "model.pt", ex / "calibration.json")
    assert "similarity" not in s_sim and len(s_head) == len(subset_rows(world["split"], "test", direction="exo2ego")) == 12
    for col in ("chosen", "iou", "shape", "location", "ego_present"):  # the frozen matching head chooses the masks
        pd.testing.assert_series_equal(s_head[col], s_sim[col])
    assert m_head["iou"] == m_sim["iou"]
    np.testing.assert_allclose(s_head["similarity"], s_sim["confidence"], rtol=1e-6)
    assert not np.allclose(s_head["confidence"], s_sim["confidence"])
    assert (s_head.pred_exists == (s_head.confidence > 0.5)).all()
    assert ((s_head.confidence > 0) & (s_head.confidence < 1))[s_head.n_candidates > 0].all()
    assert (s_head.confidence[s_head.n_candidates == 0] == 0).all()
    # the confidence is the calibrated mlp_visible probability of the chosen candidate
    cal = Calibration.load(ex / "calibration.json")
    assert cal.scale == record["scale"] and cal.bias == record["bias"]
    s = setup(experiment(None), inputs(world))
    head = build_head(s.geometry, ex / "model.pt", direction="exo2ego").eval()
    pairs = collect_pairs(
        ModelChooser(head, s, direction="exo2ego"), subset_rows(world["split"], "test", direction="exo2ego"), s.corpus
    )
    with torch.no_grad():
        expected = cal.probability(head.visibility(pairs["x"][:, :768], pairs["x"][:, 768:])).numpy()
    assert pairs["skipped"] == 3  # the frame without proposals
    got = s_head.set_index(["take_uid", "object", "exo_cam", "frame"]).confidence
    np.testing.assert_allclose(got.loc[pairs["keys"]].to_numpy(), expected, rtol=1e-5)
    absent = s_head[~s_head.ego_present & (s_head.n_candidates > 0)]
    assert len(absent) == 1
    r = absent.iloc[0]
    pred = sub["exo-ego"]["results"][r.take_uid]["masks"][r.object][f"{r.exo_cam}_{r.ego_cam}"][str(r.frame)]
    assert pred["confidence"] == pytest.approx(r.confidence) and decode_rle(pred["pred_mask"]).any()  # absent: still a mask


@pytest.mark.slow
def test_workflow_trains_the_existence_head_after_the_matching_head_and_reports_both(tmp_path):
    from conftest import run_snakemake, tiny_config

    from omama.layout import Layout

    cfg = tiny_config()
    cfg["experiments"] = {k: cfg["experiments"][k] for k in ("trained-frame", "trained-frame-head")}
    cfg["experiments"]["trained-frame-head"]["evaluate_on"] = ["tabletop", "photos"]  # both on the photo pairs too
    assert cfg["experiments"]["trained-frame-head"] == {
        **cfg["experiments"]["trained-frame"],
        "init": "experiment:trained-frame",
        "train": None,
        "existence": "head",
    }
    cfg["evaluate"]["references"] = ["random"]
    cfg["report"]["compare"] = []
    run_snakemake(tmp_path, cfg)
    r = Layout(str(tmp_path / "results"))
    cal = json.loads(Path(r.existence("calibration.json", "trained-frame-head")).read_text())
    assert {"scale", "bias", "boundary", "validation", "train"} <= set(cal) and cal["train"]["n"] > 0
    assert Path(r.log("train_existence", "exp").format(exp="trained-frame-head")).is_file()
    matching, trained = torch.load(r.model("trained-frame")), torch.load(r.existence("model.pt", "trained-frame-head"))
    assert all(torch.equal(matching[k], v) != k.startswith("mlp_visible.") for k, v in trained.items())
    sim, head = (
        json.loads(Path(r.result("predictions.json", e, "tabletop", "test")).read_text())["exo-ego"]["results"]
        for e in ("trained-frame", "trained-frame-head")
    )
    flat = lambda sub: {
        (t, o, c, f): p
        for t, x in sub.items()
        for o, cams in x["masks"].items()
        for c, frames in cams.items()
        for f, p in frames.items()
    }
    sim, head = flat(sim), flat(head)
    assert sim.keys() == head.keys() and all(sim[k]["pred_mask"] == head[k]["pred_mask"] for k in sim)
    samples = pd.read_parquet(r.result("samples.parquet", "trained-frame-head", "tabletop", "test"))
    assert sorted(samples.similarity) == sorted(p["confidence"] for p in sim.values())
    assert sorted(samples.confidence) == sorted(p["confidence"] for p in head.values())
    # the photo pairs (a dataset both are evaluated on) are predicted with the same trained existence head and calibration
    p_sim, p_head = (
        pd.read_parquet(r.result("samples.parquet", e, "photos", "test")) for e in ("trained-frame", "trained-frame-head")
    )
    assert "similarity" not in p_sim and (p_head["chosen"] == p_sim["chosen"]).all()
    assert (p_head["similarity"] == p_sim["confidence"]).all() and (p_head["confidence"] != p_sim["confidence"]).all()
    report = Path(r.report()).read_text()
    assert (
        '<section id="tabletop-existence">' in report and "Calibration, trained-frame-head" not in report
    )  # titles live in the PNG
    assert report.count("<td>trained-frame-head</td>") >= 3  # metrics row + the existence rows (head, similarity)


def test_mismatched_pairs_pair_a_source_with_another_object_of_its_take():
    keys = [("a", "cup", "cam1", 0), ("a", "cup", "cam2", 0), ("a", "pen", "cam1", 0), ("b", "box", "cam1", 0)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        j = mismatch_partners(keys, rng)
        assert j[0] == j[1] == 2 and j[2] in (0, 1) and j[3] in (0, 1, 2)  # take b has one object: another take's
    assert (mismatch_partners(keys[:2], rng) == -1).all()  # one object only: no partner
    x = torch.arange(4 * 4, dtype=torch.float32).view(4, 4)
    xa, ya = with_mismatches(x, torch.ones(4, dtype=torch.bool), keys[:3] + [("a", "pen", "cam2", 0)], 2, rng)
    assert xa.shape == (12, 4) and ya.tolist() == [True] * 4 + [False] * 8
    assert torch.equal(xa[4:8, :2], x[:, :2])  # sources kept, candidates from the other object's rows
    assert all(
        ((xa[k, 2:] == x[2:, 2:]).all(1).any() if k % 4 < 2 else (xa[k, 2:] == x[:2, 2:]).all(1).any()) for k in range(4, 12)
    )
