"""The training samples of the matching head and their batches, and the backbone features of a
batch: read from the take's feature stores, or computed by the frozen backbone from frame images.

Masks reach the descriptors at the backbone's input resolution of their view.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


class TrainingSet(torch.utils.data.Dataset):
    """Training samples: source mask + features (or image), 1 + ``negatives`` candidate masks.

    ``stored`` (``Setup.stored``): the samples carry stored features in the store's dtype
    (float16, float32, or int8 with ``*_dequant``; ``batch_features`` turns them into float32 on
    the training device), else frame images. Candidate sets are drawn from a generator seeded by
    (seed, epoch, index), so any worker count and any resume give the same samples.
    ``__getitems__`` builds a whole batch, reading each (store, camera)'s frames in one call; with a
    ``FeatureCache``'s ``index`` (``cached``) it reads nothing and names each sample's rows of the cache instead.
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
        cached: dict | None = None,
    ):
        self.rows = rows.reset_index(drop=True)
        self.corpus, self.geometry, self.negatives, self.seed, self.stored = corpus, geometry, negatives, seed, stored
        self.cached = cached
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
        for key, col in (("src", d.src_col), ("dst", d.dst_col)):
            cams = rows[col].tolist()
            if self.cached is None:
                batch.update(feature_inputs(self.corpus, key, takes, cams, frames, self.stored))
            else:
                batch.update(cache_rows(self.cached, key, takes, cams, frames))
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


def cache_rows(index: dict, key: str, takes: list, cams: list, frames: list) -> dict:
    """The ``key`` side of (take, camera, frame) triples as rows of a ``FeatureCache`` (``index``: its ``index``):
    ``{key}_view`` (the cache's part) and ``{key}_rows``."""
    found = [index[take, cam] for take, cam in zip(takes, cams)]
    views = {view for view, _ in found}
    if len(views) != 1:
        raise ValueError(f"the batch's {key} features mix views {sorted(views)}")
    return {f"{key}_view": views.pop(), f"{key}_rows": torch.tensor([rows[int(f)] for (_, rows), f in zip(found, frames)])}


class FeatureCache:
    """The stored features of a training set's (take, camera) arrays, loaded once into one tensor per view on the
    training device, in the stores' dtype (int8 with its [scale; offset]); batches index it there.

    ``index`` ((take, camera) -> (view, {frame: row})) is plain data, for the dataset (and its worker processes);
    ``gather`` gives what ``FeatureStore.read_stored`` would, on the device.
    """

    def __init__(self, corpus: Corpus, arrays: list[tuple[str, str]], device: torch.device):
        self.device, self.index = torch.device(device), {}
        by_view: dict[str, list[tuple[str, str]]] = {}
        for take, cam in arrays:
            by_view.setdefault(corpus[take].store.view(cam), []).append((take, cam))
        self.values, self.dequant = {}, {}
        for view, members in by_view.items():
            frames = [corpus[t].store.frames(c) for t, c in members]
            shape, dtype, dq_shape = corpus[members[0][0]].store.stored_shape(members[0][1])
            total = sum(map(len, frames))
            values = torch.empty((total, *shape), dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device=self.device)
            dequant = None if dq_shape is None else torch.empty((total, *dq_shape), dtype=torch.float32, device=self.device)
            start = 0
            for (take, cam), fs in zip(members, frames):
                v, dq = corpus[take].store.read_stored(cam, fs)
                values[start : start + len(fs)] = torch.from_numpy(v)
                if dequant is not None:
                    dequant[start : start + len(fs)] = torch.from_numpy(dq)
                self.index[take, cam] = (view, {f: start + i for i, f in enumerate(fs)})
                start += len(fs)
            self.values[view], self.dequant[view] = values, dequant

    @staticmethod
    def arrays(rows: pd.DataFrame, direction: str) -> list[tuple[str, str]]:
        """The (take, camera) arrays the rows read, in a fixed order."""
        d = Direction(direction)
        pairs = {(t, c) for col in (d.src_col, d.dst_col) for t, c in zip(rows.take_uid, rows[col])}
        return sorted(pairs)

    @staticmethod
    def nbytes(corpus: Corpus, arrays: list[tuple[str, str]]) -> int:
        """Bytes the arrays take in the cache (values in the stored dtype, int8's scale and offset)."""
        total = 0
        for take, cam in arrays:
            store = corpus[take].store
            shape, dtype, dq_shape = store.stored_shape(cam)
            per = int(np.prod(shape)) * np.dtype(dtype).itemsize + (int(np.prod(dq_shape)) * 4 if dq_shape else 0)
            total += per * len(store.frames(cam))
        return total

    def gather(self, view: str, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(values, int8 [scale; offset] or None) of ``rows`` of ``view``, on the device."""
        rows = rows.to(self.device, non_blocking=True)
        dequant = self.dequant[view]
        return self.values[view][rows], None if dequant is None else dequant[rows]


def device_memory(device: torch.device) -> tuple[int, int]:
    """(free, total) bytes of the device: the GPU's; the host's on the CPU (its cgroup limit when lower)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)
    import os
    from pathlib import Path

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.is_file() and limit.read_text().strip().isdigit():
        total = min(total, int(limit.read_text()))
    return min(total, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")), total


def feature_cache(rows: pd.DataFrame, corpus: Corpus, direction: str, device: torch.device, share: float):
    """A ``FeatureCache`` of the arrays ``rows`` read when they take at most ``share`` of the device's memory (and fit
    in what is free), else None (batches are then read from the stores); the choice is logged."""
    arrays = FeatureCache.arrays(rows, direction)
    need = FeatureCache.nbytes(corpus, arrays)
    free, total = device_memory(device)
    gb = lambda n: f"{n / 1e9:.2f} GB"
    if share > 0 and need <= min(share * total, free):
        log.info(
            "feature cache: %s of %d arrays loaded once onto %s (cap %s of %s)",
            gb(need),
            len(arrays),
            device,
            share,
            gb(total),
        )
        return FeatureCache(corpus, arrays, device)
    log.info(
        "no feature cache: the %d arrays need %s, %s may take %s of %s (%s free): reading batches from the stores",
        len(arrays),
        gb(need),
        device,
        share,
        gb(total),
        gb(free),
    )
    return None


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


def batch_features(
    batch: dict, backbone=None, device=None, cache: FeatureCache | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, destination) float32 backbone features of a batch, on ``device`` (default: where they are).

    Stored features travel in the store's dtype and are converted (int8: dequantised) on the
    device; cached ones are gathered from ``cache`` there, the same values; on-the-fly ones are computed now (no graph).
    """
    if "src_rows" in batch:
        if cache is None:
            raise ValueError("a batch of cache rows needs its FeatureCache")
        return tuple(dequantise(*cache.gather(batch[f"{k}_view"], batch[f"{k}_rows"])) for k in ("src", "dst"))
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
