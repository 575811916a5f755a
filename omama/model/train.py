"""Training of the matching head: AdamW, per-step cosine schedule, checkpoints every epoch, resume.

Features come from the Zarr stores ("pre-extracted") or from the frozen backbone inside the
loop ("on-the-fly", no graph through the backbone); descriptors and loss are the same code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from omama.evaluation.metrics import summarise
from omama.evaluation.predict import run_predictions
from omama.experiment import Experiment, Inputs
from omama.io import atomic_path, file_sha256, load_torch, save_torch, write_json
from omama.model.batches import TrainingSet, batch_features, epoch_batches, feature_cache, training_loader
from omama.model.choose import ModelChooser
from omama.model.head import MatchingHead, matching_loss, score_candidates
from omama.model.setup import INIT_SEED, Setup, build_head, setup
from omama.model.takedata import Corpus, subset_rows

log = logging.getLogger(__name__)


def save_state(path, state: dict) -> None:
    save_torch(path, state)


def validation_iou(head: MatchingHead, rows, s: Setup, *, direction: str) -> float:
    """Mean IoU (official protocol) on the validation rows; NaN when there are none."""
    if len(rows) == 0:
        return float("nan")
    head.eval()
    _, _, samples = run_predictions(rows, s.corpus, ModelChooser(head, s, direction=direction), desc="validate")
    return summarise(samples)["iou"]


def input_identity(path) -> str | None:
    """What identifies one input: a file's content digest; for a folder (feature store, frame
    images; too large to read twice) the digest of every file's name, size and mtime, so any
    rewrite changes it."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(f"missing training input {path}")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def rows_digest(rows) -> str:
    """Digest of a table's columns and values (row order included)."""
    h = hashlib.sha256(json.dumps(list(map(str, rows.columns))).encode())
    h.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return h.hexdigest()


def training_fingerprint(*, settings: dict, rows, val_rows, corpus: Corpus, init_path) -> dict:
    """Everything a training run reads, by part: settings, initial weights, the training and
    validation rows, and the annotation, proposals and features (or frames: on-the-fly) of their takes."""
    takes = sorted(set(rows["take_uid"]) | set(val_rows["take_uid"]))
    parts = (
        "annotation",
        "proposals",
        "images" if settings["train"]["features"] == "on-the-fly" else "features",
        *(("exo_proposals",) if settings["direction"] == "ego2exo" else ()),
    )
    weights = settings["backbone"].get("weights")
    return {
        "settings": json.dumps(settings, sort_keys=True, default=str),
        "init": input_identity(init_path),
        "backbone weights": input_identity(weights) if weights and Path(weights).exists() else None,
        "rows": rows_digest(rows) + rows_digest(val_rows),
        "inputs": {t: {k: input_identity(corpus[t].paths[k]) for k in parts} for t in takes},
    }


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """The parts (and takes' inputs) in which two fingerprints differ."""
    changed = [k for k in new if k != "inputs" and old.get(k) != new[k]]
    before = old.get("inputs") or {}
    for take in sorted(set(before) | set(new["inputs"])):
        a, b = before.get(take, {}), new["inputs"].get(take, {})
        changed += [f"{part} of take {take!r}" for part in sorted(set(a) | set(b)) if a.get(part) != b.get(part)]
    return changed


def train_experiment(
    experiment: Experiment, inputs: Inputs, *, model_out, history_out, checkpoint_dir, stop_after_epochs: int | None = None
) -> list[dict] | None:
    """Train one experiment's matching head on ``inputs`` (its dataset's split table, takes and features),
    or, with ``train: null``, write its initial weights as the model.

    Writes ``model_out`` (best-validation-IoU weights; the last epoch's when there is no
    validation data) and ``history_out``; resumes from ``checkpoint_dir/last.pt`` only when its
    fingerprint (``training_fingerprint``: every setting and input) is the same, else trains
    from scratch. ``stop_after_epochs`` ends this call after that many epochs, leaving a
    resumable checkpoint (returns None then).
    """
    tc, direction, split_table, init_path = experiment.train, experiment.direction, inputs.split, inputs.init
    s = setup(experiment, inputs)
    device, corpus, geometry, backbone = s.device, s.corpus, s.geometry, s.backbone
    head = build_head(geometry, init_path, INIT_SEED if tc is None else tc["seed"], direction=direction).to(device)
    if tc is None:
        with atomic_path(model_out) as tmp:
            torch.save(head.state_dict(), tmp)
        write_json(history_out, [])
        return []

    rows, val_rows = (subset_rows(split_table, part, direction=direction) for part in ("train", "val"))
    if len(rows) == 0:
        raise ValueError(f"split table {split_table} has no training rows")
    # Stored features that fit in the training device's memory (train.feature_cache) are loaded there once.
    cache = feature_cache(rows, corpus, direction, device, tc["feature_cache"]) if s.stored else None
    dataset = TrainingSet(
        rows,
        corpus,
        geometry,
        negatives=tc["negatives"],
        seed=tc["seed"],
        stored=s.stored,
        direction=direction,
        cached=cache and cache.index,
    )
    steps = math.ceil(len(dataset) / tc["batch_size"])
    optimizer = torch.optim.AdamW(head.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=tc["epochs"] * steps, eta_min=tc["lr_min"])
    fingerprint = training_fingerprint(
        settings={"train": tc, "backbone": experiment.backbone, "proposer": experiment.proposer, "direction": direction},
        rows=rows,
        val_rows=val_rows,
        corpus=corpus,
        init_path=init_path,
    )
    torch.manual_seed(tc["seed"])
    history, best_iou, best_state, start = [], -math.inf, None, 0
    last = Path(checkpoint_dir) / "last.pt"
    if last.is_file():
        ck = load_torch(last, map_location=device, weights_only=False)
        old = ck.get("fingerprint") if isinstance(ck.get("fingerprint"), dict) else {}
        changed = fingerprint_changes(old, fingerprint)
        if not changed:
            head.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            torch.set_rng_state(ck["rng"]["torch"])
            history, best_iou, best_state, start = ck["history"], ck["best_iou"], ck["best_state"], ck["epoch"]
            log.info("resuming after epoch %d from %s", start, last)
        else:
            log.info("training from scratch: checkpoint %s was made for other %s", last, ", ".join(changed))

    for epoch in range(start, tc["epochs"]):
        t0 = time.perf_counter()
        dataset.epoch = epoch
        batches = epoch_batches(rows, tc["batch_size"], tc["seed"], epoch, tc["order"])
        loader = training_loader(dataset, batches, tc["workers"], device)
        head.train()
        losses, waited = [], 0.0
        batches_in = iter(tqdm(loader, desc=f"epoch {epoch + 1}/{tc['epochs']}", mininterval=5))
        while True:
            t_wait = time.perf_counter()
            batch = next(batches_in, None)
            waited += time.perf_counter() - t_wait  # the step waits for the loader (the loop synchronises each step)
            if batch is None:
                break
            src_feat, dst_feat = batch_features(batch, backbone, device, cache)  # float32 made on the device
            scores = score_candidates(head, src_feat, dst_feat, batch["src_mask"].to(device), batch["cand_masks"].to(device))
            loss = matching_loss(scores, batch["target"].to(device), batch["visible"].to(device), batch["valid"].to(device))
            if not torch.isfinite(loss):
                raise ValueError(
                    f"training loss is {loss.item()} at epoch {epoch + 1}, batch {len(losses) + 1}: the features or the "
                    f"head's weights (initial weights: {init_path or 'seeded'}) hold NaN or inf; nothing of this epoch was saved"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(head.parameters(), tc["grad_clip"])
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        trained = time.perf_counter() - t0
        val_iou = validation_iou(head, val_rows, s, direction=direction)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "val_iou": None if math.isnan(val_iou) else val_iou,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "steps": len(losses),
                "train_seconds": trained,  # the steps alone, without validation
                "loader_wait_seconds": waited,  # of which the steps waited for their batch
            }
        )
        log.info("epoch %d: train loss %.4f, val IoU %.4f", epoch + 1, history[-1]["train_loss"], val_iou)
        if best_state is None or math.isnan(val_iou) or val_iou > best_iou:
            best_iou = val_iou if not math.isnan(val_iou) else best_iou
            best_state = copy.deepcopy({k: v.cpu() for k, v in head.state_dict().items()})
        save_state(
            last,
            {
                "model": head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
                "epoch": epoch + 1,
                "history": history,
                "best_iou": best_iou,
                "best_state": best_state,
                "fingerprint": fingerprint,
            },
        )
        if stop_after_epochs is not None and epoch + 1 - start >= stop_after_epochs and epoch + 1 < tc["epochs"]:
            log.info("stopping after epoch %d as asked; resumable from %s", epoch + 1, last)
            return None
    with atomic_path(model_out) as tmp:
        torch.save(best_state, tmp)
    write_json(history_out, history, indent=1)
    return history
