"""The training samples of the matching head and their batches, and the backbone features of a
batch: read from the take's feature stores, or computed by the frozen backbone from frame images.

Masks reach the descriptors at the backbone's input resolution of their view.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
import pandas as pd
import torch

from omama.direction import Direction
from omama.features.store import dequantise
from omama.io import where
from omama.model.descriptors import mask_boxes
from omama.model.negatives import PADDING, POSITIVE, candidate_set
from omama.model.takedata import Corpus, Geometry


class TrainingSet(torch.utils.data.Dataset):
    """Training samples: source mask + features (or image), 1 + ``negatives`` candidate masks.

    ``stored`` (``Setup.stored``): the samples carry stored features in the store's dtype
    (float16, float32, or int8 with ``*_dequant``; ``batch_features`` turns them into float32 on
    the training device), else frame images. Candidate sets are drawn from a generator seeded by
    (seed, epoch, index), so any worker count and any resume give the same samples.
    ``__getitems__`` builds a whole batch, reading each (store, camera)'s frames in one call.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        corpus: Corpus,
        geometry: Geometry,
        *,
        negatives: int,
        seed: int,
        stored: bool,
        direction: str,
    ):
        self.rows = rows.reset_index(drop=True)
        self.corpus, self.geometry, self.negatives, self.seed, self.stored = corpus, geometry, negatives, seed, stored
        self.direction = Direction(direction)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        batch = self.__getitems__([i])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, indices) -> dict:
        """The collated batch of samples ``indices``."""
        batch = collate([self._sample(int(i)) for i in indices])
        rows = self.rows.iloc[list(indices)]
        takes, frames, d = rows.take_uid.tolist(), rows.frame.tolist(), self.direction
        batch.update(feature_inputs(self.corpus, "src", takes, rows[d.src_col].tolist(), frames, self.stored))
        batch.update(feature_inputs(self.corpus, "dst", takes, rows[d.dst_col].tolist(), frames, self.stored))
        return batch

    def _sample(self, i: int) -> dict:
        r = self.rows.iloc[i]
        td = self.corpus[r.take_uid]
        d = self.direction
        src_cam, dst_cam = r[d.src_col], r[d.dst_col]
        dst_size = self.geometry.input_size[d.dst_view]
        src = td.source_mask(r.object, src_cam, r.frame, self.geometry.input_size[d.src_view])
        gt = td.mask(r.object, dst_cam, r.frame, dst_size)
        if (gt is not None) != bool(r[d.present]):
            raise ValueError(
                f"{d.dst_view} presence in the split table disagrees with the annotation: {where(r.take_uid, r.object, dst_cam, r.frame)}"
            )
        props = td.proposal_masks(int(r.frame), dst_size, dst_cam)
        boxes = mask_boxes(torch.from_numpy(props)).numpy()
        gt_box = None if gt is None else mask_boxes(torch.from_numpy(gt)).numpy()
        rng = np.random.default_rng([self.seed, self.epoch, i])
        cs = candidate_set(props, boxes, gt_box, self.negatives, rng)
        cand = np.zeros((len(cs.slots), *dst_size), bool)
        real = cs.slots >= 0
        cand[real] = props[cs.slots[real]]
        if gt is not None:
            cand[cs.slots == POSITIVE] = gt
        return {
            "src_mask": torch.from_numpy(src)[None],
            "cand_masks": torch.from_numpy(cand),
            "valid": torch.from_numpy(cs.slots != PADDING),
            "target": int(cs.target),
            "visible": float(gt is not None),
        }


def feature_inputs(corpus: Corpus, key: str, takes: list, cams: list, frames: list, stored: bool) -> dict:
    """What ``batch_features`` needs for the ``key`` ("src" or "dst") side of (take, camera, frame)
    triples: stored features (``{key}_feat``, int8 stores also ``{key}_dequant``), else frame images
    (``{key}_image``)."""
    if not stored:
        return {f"{key}_image": [corpus[t].image(c, int(f)) for t, c, f in zip(takes, cams, frames)]}
    values, dequant = read_stored_batch(lambda take: corpus[take].store, takes, cams, frames)
    out = {f"{key}_feat": torch.from_numpy(values)}
    if dequant is not None:
        out[f"{key}_dequant"] = torch.from_numpy(dequant)
    return out


def read_stored_batch(store_of, takes: list, cams: list, frames: list) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored features of (take, camera, frame) triples, read straight into one batch array with one
    call per (take, camera); ``store_of(take)`` gives the take's FeatureStore.
    Returns (values in the stored dtype, int8 [scale; offset] or None)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(takes, cams)):
        groups.setdefault(key, []).append(i)
    shape, dtype, dq_shape = store_of(takes[0]).stored_shape(cams[0])
    values = np.empty((len(frames), *shape), dtype)
    dequant = None if dq_shape is None else np.empty((len(frames), *dq_shape), np.float32)
    for (take, cam), members in groups.items():
        store = store_of(take)
        if store.stored_shape(cam)[:2] != (shape, dtype):
            raise ValueError(
                f"camera {cam!r} of take {take!r} stores {store.stored_shape(cam)[:2]}, other samples of "
                f"the batch {(shape, dtype)}: the batch's feature stores disagree"
            )
        store.read_stored(cam, [frames[i] for i in members], out=(values, dequant), at=members)
    return values, dequant


ORDERS = ("shuffled", "take-blocks")


def epoch_batches(rows: pd.DataFrame, batch_size: int, seed: int, epoch: int, order: str) -> list[list[int]]:
    """Row indices of each batch of an epoch.

    "shuffled": one seeded permutation of all rows, cut into batches (every batch mixes takes).
    "take-blocks": takes in a seeded random order, each take's rows shuffled, then cut into
    batches, so a batch holds one or two takes and consecutive batches read the same stores
    (page-cache friendly; the price is less diverse batches: samples of one take are correlated).
    """
    gen = torch.Generator().manual_seed(seed * 1009 + epoch)
    if order == "shuffled":
        flat = torch.randperm(len(rows), generator=gen).tolist()
    elif order == "take-blocks":
        takes = rows.take_uid.to_numpy()
        names = sorted(set(takes))
        flat = []
        for t in torch.randperm(len(names), generator=gen).tolist():
            members = np.flatnonzero(takes == names[t])
            flat += members[torch.randperm(len(members), generator=gen).numpy()].tolist()
    else:
        raise ValueError(f"unknown batch order {order!r}; use one of {ORDERS}")
    return [flat[i : i + batch_size] for i in range(0, len(flat), batch_size)]


def training_loader(
    dataset: TrainingSet, batches: list[list[int]], workers: int, device: torch.device, prefetch: int = 2
) -> torch.utils.data.DataLoader | Prefetched:
    """Batches built whole by ``TrainingSet.__getitems__``, pinned for a GPU: in ``workers`` processes,
    or with ``workers: 0`` in one background thread of this process, ``prefetch`` batches ahead."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=prefetch if workers else None,
        persistent_workers=False,
    )
    return loader if workers else Prefetched(loader, prefetch)


class Prefetched:
    """Iterates ``loader`` in a background thread, up to ``depth`` items ahead, in the same order.

    A batch of stored features is mostly memory copies out of the feature stores, which NumPy makes
    without holding the GIL, so reading the next batch overlaps the training step on the GPU (at the
    official grids a batch holds 184 MB of float16 features; benchmarks/RESULTS.md). Worker processes
    would have to copy each batch once more between processes. An error raised while building a
    batch is raised again, unchanged, by the iterating thread.
    """

    def __init__(self, loader, depth: int = 2):
        self.loader, self.depth = loader, max(1, int(depth))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        items: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def produce() -> None:
            try:
                for item in self.loader:
                    while not stop.is_set():
                        try:
                            items.put(("item", item), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                items.put(("end", None))
            except BaseException as e:  # handed to the consumer, which raises it
                items.put(("error", e))

        worker = threading.Thread(target=produce, name="omama-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                kind, item = items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:  # the consumer stopped early, finished, or failed: end the producer too
            stop.set()
            while worker.is_alive():
                try:
                    items.get(timeout=0.1)
                except queue.Empty:
                    pass
            worker.join()


def collate(items) -> dict:
    """Stack tensors; keep frame images as lists (the backbone resizes them). A built batch passes through."""
    if isinstance(items, dict):
        return items
    out = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if k.endswith("_image"):
            out[k] = vals
        elif isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        else:
            out[k] = torch.tensor(vals)
    return out


def batch_features(batch: dict, backbone=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, destination) float32 backbone features of a batch, on ``device`` (default: where they are).

    Stored features travel in the store's dtype and are converted (int8: dequantised) on the
    device; on-the-fly ones are computed now (no graph).
    """
    if "src_feat" in batch:
        moved = [
            batch[f"{k}_feat"] if device is None else batch[f"{k}_feat"].to(device, non_blocking=True) for k in ("src", "dst")
        ]
        return tuple(dequantise(v, batch.get(f"{k}_dequant")) for v, k in zip(moved, ("src", "dst")))
    if backbone is None:
        raise ValueError("on-the-fly features need a backbone")
    src = backbone.features(batch["src_image"], "exo").cpu().clone(memory_format=torch.contiguous_format)
    dst = backbone.features(batch["dst_image"], "ego").cpu().clone(memory_format=torch.contiguous_format)
    return (src, dst) if device is None else (src.to(device), dst.to(device))
