"""The existence (visibility) head: ``mlp_visible`` trained on ego presence, and its calibration.

An experiment's ``existence`` setting says where a prediction's confidence comes from:
- ``similarity``: the published O-MaMa rule, the sigmoid of the best cosine similarity;
- ``head``: the checkpoint's visibility MLP (``mlp_visible``, 1536 -> 768 -> 256 -> 128 -> 2) on the
  projected descriptors of the source object and of its best-matching candidate (2 x 768), trained
  with cross-entropy on "object present in ego" AFTER the matching head, which stays frozen (the
  chosen masks, hence IoU, shape and location, are those of the matching head alone). The classes
  are weighted to equal total weight, as the benchmark scores existence by balanced accuracy. Each
  epoch also shows it mismatched pairs labelled absent (a source with another object's best match):
  without them the MLP memorises which objects tend to be absent instead of judging the match.

Calibration (fitted on the validation split): confidence = sigmoid(scale * d + bias), d the logit
difference (present - absent), with ``scale`` and ``bias`` minimising the class-balanced negative
log-likelihood (each class weighs half; a small L2 penalty on ``scale`` keeps separable data finite).
The evaluator's fixed rule "confidence > 0.5 = present" is then the boundary d = -bias / scale at
which the validation data's two classes are equally likely, i.e. the balanced-accuracy boundary;
the confidence is the probability of presence at equal class priors.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from omama.evaluation.metrics import balanced_accuracy_score
from omama.experiment import Experiment, Inputs
from omama.io import atomic_path, write_json
from omama.model.calibration import Calibration, fit_calibration
from omama.model.head import PRESENT, MatchingHead

log = logging.getLogger(__name__)

MODES = ("similarity", "head")


def balanced_accuracy(present, predicted) -> float | None:
    """scikit-learn's balanced accuracy; None unless both classes are present."""
    y = np.asarray(present, bool)
    if y.all() or not y.any():
        return None
    return float(balanced_accuracy_score(y, np.asarray(predicted, bool)))


def collect_pairs(chooser, rows: pd.DataFrame, corpus) -> dict:
    """The frozen matching head's projected descriptors for ``rows``: ``x`` (n, 2D) = source and
    best-matching candidate, ``present`` (n,), ``similarity`` (n,) best cosine, ``keys`` (take, object,
    exo camera, frame) of each, and ``skipped``: rows of
    frames without proposals (no candidate to describe; predictions give them confidence 0)."""
    d = chooser.direction
    xs, ys, cos, keys, skipped = [], [], [], [], 0
    for (take, dst_cam, frame), g in rows.groupby(["take_uid", d.dst_col, "frame"], sort=False):
        td = corpus[take]
        props = td.proposals(int(frame), dst_cam)
        if props is None or len(props) == 0:
            skipped += len(g)
            continue
        scores, q, t = chooser.match(td, g, int(frame))
        best = scores.argmax(dim=1)
        xs.append(torch.cat([q, t[torch.arange(len(g)), best]], dim=-1).cpu())
        ys.append(torch.tensor(g[d.present].to_numpy(bool)))
        cos.append(scores.max(dim=1).values.cpu())
        keys += [(take, r.object, r.exo_cam, int(frame)) for r in g.itertuples()]
    if skipped:
        log.warning("%d of %d rows skipped for the existence head: their frames have no proposals", skipped, len(rows))
    if not xs:
        raise ValueError(f"none of the {len(rows)} rows has proposals: nothing to train or calibrate the existence head on")
    return {"x": torch.cat(xs), "present": torch.cat(ys), "similarity": torch.cat(cos), "keys": keys, "skipped": skipped}


def class_weights(present: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weights (absent, present) giving each class equal total weight (a missing class: 0)."""
    n = torch.stack([(~present).sum(), present.sum()]).float()
    w = torch.where(n > 0, len(present) / (2 * n.clamp(min=1)), torch.zeros(2))
    return w if PRESENT == 1 else w.flip(0)


def visibility_loss(head: MatchingHead, x: torch.Tensor, present: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy of ``mlp_visible`` on pairs ``x`` (n, 2D)."""
    d = x.shape[-1] // 2
    target = torch.where(present, PRESENT, 1 - PRESENT)
    return F.cross_entropy(head.visibility(x[:, :d], x[:, d:]), target, weight=weights.to(x.device))


def mismatch_partners(keys, rng: np.random.Generator) -> np.ndarray:
    """For each row (take, object, ...), a random row of another object of the same take (of another
    take when its take has one object only; -1 when every row is of one object)."""
    takes = np.array([k[0] for k in keys])
    objects = np.array([f"{k[0]}\0{k[1]}" for k in keys])
    out = np.full(len(keys), -1)
    for i in range(len(keys)):
        other = objects != objects[i]
        pool = np.flatnonzero(other & (takes == takes[i]))
        pool = pool if len(pool) else np.flatnonzero(other)
        if len(pool):
            out[i] = rng.choice(pool)
    return out


def with_mismatches(
    x: torch.Tensor, present: torch.Tensor, keys, mismatches: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` plus ``mismatches`` mismatched pairs per row, labelled absent: a row's source descriptor
    with the best-matching candidate of another object's row (what the best match of an absent
    object looks like: some other object's mask). They make the head judge the pair, not recognise
    which objects tend to be absent."""
    d = x.shape[-1] // 2
    xs, ys = [x], [present]
    for _ in range(mismatches):
        j = torch.from_numpy(mismatch_partners(keys, rng))
        ok = j >= 0
        xs.append(torch.cat([x[ok, :d], x[j[ok], d:]], dim=-1))
        ys.append(torch.zeros(int(ok.sum()), dtype=torch.bool, device=present.device))
    return torch.cat(xs), torch.cat(ys)


def train_visibility(
    head: MatchingHead,
    x: torch.Tensor,
    present: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    keys=None,
    mismatches: int,
) -> list[dict]:
    """Train ``head.mlp_visible`` only (every other parameter frozen); per-epoch mean loss. With
    ``keys`` (take, object, ...) of the rows, each epoch adds ``mismatches`` freshly drawn mismatched
    pairs per row (``with_mismatches``). Keeps the epoch with the lowest training loss."""
    for p in head.parameters():
        p.requires_grad_(False)
    params = list(head.mlp_visible.parameters())
    for p in params:
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history, best, best_state = [], float("inf"), None
    head.train()
    for epoch in range(epochs):
        xe, ye = (x, present) if keys is None or not mismatches else with_mismatches(x, present, keys, mismatches, rng)
        weights = class_weights(ye.cpu())
        order = torch.randperm(len(xe), generator=gen)
        total = 0.0
        for i in range(0, len(xe), batch_size):
            idx = order[i : i + batch_size].to(xe.device)
            loss = visibility_loss(head, xe[idx], ye[idx], weights)
            if not torch.isfinite(loss):
                raise ValueError(
                    f"existence training loss is {loss.item()} at epoch {epoch + 1}: the matching head or the features "
                    "hold NaN or inf"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append({"epoch": epoch + 1, "train_loss": total / len(xe), "samples": len(xe)})
        if history[-1]["train_loss"] < best:
            best, best_state = history[-1]["train_loss"], copy.deepcopy(head.mlp_visible.state_dict())
    head.mlp_visible.load_state_dict(best_state)
    for p in head.parameters():
        p.requires_grad_(True)
    head.eval()
    return history


def logit_difference(head: MatchingHead, x: torch.Tensor) -> np.ndarray:
    d = x.shape[-1] // 2
    with torch.no_grad():
        z = head.visibility(x[:, :d], x[:, d:])
    return (z[:, PRESENT] - z[:, 1 - PRESENT]).cpu().numpy()


def train_existence(experiment: Experiment, inputs: Inputs, *, model_out, calibration_out, history_out) -> dict:
    """Train an experiment's existence head after its matching head, and calibrate it.

    Reads the experiment's matching head (``inputs.model``, frozen), trains ``mlp_visible`` on the training
    rows of ``inputs.split``, fits the calibration on its validation rows, and writes ``model_out`` (the whole
    head, released names), ``calibration_out`` (scale, bias, boundary, validation balanced accuracy, counts)
    and ``history_out``. Returns the calibration record."""
    from omama.model.choose import ModelChooser
    from omama.model.setup import trained_head
    from omama.model.takedata import subset_rows

    split_table, settings, direction = inputs.split, experiment.existence_train, experiment.direction
    s, head = trained_head(experiment, inputs)
    device, corpus = s.device, s.corpus
    frozen = {k: v.clone() for k, v in head.state_dict().items() if not k.startswith("mlp_visible.")}
    chooser = ModelChooser(head, s, direction=direction)
    rows, val_rows = (subset_rows(split_table, part, direction=direction) for part in ("train", "val"))
    if rows.empty:
        raise ValueError(f"split table {split_table} has no training rows for the existence head")
    train = collect_pairs(chooser, rows, corpus)
    if not train["present"].any() or (train["present"].all() and not settings["mismatches"]):
        raise ValueError(
            f"the training rows of {split_table} hold only {'present' if train['present'].any() else 'absent'} "
            "objects: the existence head needs both (more takes, another split, or mismatches > 0)"
        )
    torch.manual_seed(settings["seed"])
    history = train_visibility(
        head,
        train["x"].to(device),
        train["present"].to(device),
        epochs=settings["epochs"],
        lr=settings["lr"],
        batch_size=settings["batch_size"],
        weight_decay=settings["weight_decay"],
        seed=settings["seed"],
        keys=train["keys"],
        mismatches=settings["mismatches"],
    )
    changed = [k for k, v in head.state_dict().items() if k in frozen and not torch.equal(v, frozen[k])]
    if changed:
        raise AssertionError(f"the matching head changed while training the existence head: {changed}")
    record = {
        "settings": settings,
        "train": {"n": len(train["x"]), "n_present": int(train["present"].sum()), "skipped_no_proposals": train["skipped"]},
    }
    if val_rows.empty:
        cal, info = Calibration(), {"n": 0, "fitted": False, "reason": "no validation rows"}
        log.warning("existence calibration not fitted: no validation rows in %s", split_table)
        d_val = y_val = sim_val = np.zeros(0)
    else:
        val = collect_pairs(chooser, val_rows, corpus)
        d_val, y_val = logit_difference(head, val["x"].to(device)), val["present"].numpy()
        sim_val = torch.sigmoid(val["similarity"]).numpy()
        cal, info = fit_calibration(d_val, y_val)
        info["skipped_no_proposals"] = val["skipped"]
    conf_val = torch.sigmoid(torch.from_numpy(cal.scale * d_val + cal.bias)).numpy()
    info.update(
        {
            "balanced_accuracy": balanced_accuracy(y_val, conf_val > 0.5),
            "balanced_accuracy_uncalibrated": balanced_accuracy(y_val, d_val > 0),
            "balanced_accuracy_similarity": balanced_accuracy(y_val, sim_val > 0.5),
        }
    )
    record.update({**asdict(cal), "boundary": cal.boundary, "validation": info})
    with atomic_path(model_out) as tmp:
        torch.save({k: v.cpu() for k, v in head.state_dict().items()}, tmp)
    write_json(history_out, history, indent=1)
    write_json(calibration_out, record, indent=1)
    log.info(
        "existence head: final train loss %.4f; calibration scale %.4g bias %.4g (boundary %.4g); "
        "validation balanced accuracy %s",
        history[-1]["train_loss"],
        cal.scale,
        cal.bias,
        cal.boundary,
        info["balanced_accuracy"],
    )
    return record
