"""Per-take data access and the training samples of the matching head.

A sample is one row of a split table: (take, object, exo camera, ego camera, frame).
Masks reach the descriptors at the backbone's input resolution of their view.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from omama.descriptors import mask_boxes
from omama.direction import Direction
from omama.features import FeatureStore, dequantise, load_frame
from omama.io import read_json
from omama.masks import decode_rle, resize_mask, where
from omama.negatives import PADDING, POSITIVE, candidate_set
from omama.proposals import ProposalSet, load_camera_proposals, load_proposals

VIEWS = ("ego", "exo")


@dataclass(frozen=True)
class Geometry:
    """Channels, patch grid and input size per view of a backbone (from ``Backbone.describe()``)."""

    channels: int
    grid: dict
    input_size: dict

    @classmethod
    def from_description(cls, d: dict) -> Geometry:
        return cls(int(d["channels"]), {v: tuple(d["grid"][v]) for v in VIEWS}, {v: tuple(d["input_size"][v]) for v in VIEWS})


def take_of(path) -> str:
    """Take uid of a per-take path: frames/{take}/annotation.json, {take}.zarr, {take}.parquet."""
    p = Path(path)
    return p.parent.name if p.name == "annotation.json" or p.name == "images" else p.name.split(".")[0]


def by_take(paths) -> dict[str, str]:
    return {take_of(p): str(p) for p in (paths or [])}


class TakeData:
    """Lazy access to one take: annotation masks, ego (and exo) proposals, stored features or frame images."""

    def __init__(self, annotation: str, proposals: str, features: str | None = None, images: str | None = None,
                 exo_proposals: str | None = None):
        self.paths = {"annotation": annotation, "proposals": proposals, "features": features, "images": images,
                      "exo_proposals": exo_proposals}

    @functools.cached_property
    def annotation(self) -> dict:
        return read_json(self.paths["annotation"], "take annotation")

    @property
    def take(self) -> str:
        return self.annotation["take_uid"]

    def rle(self, obj: str, cam: str, frame: int) -> dict | None:
        """Native-size COCO RLE of an object's mask, None when the camera has no mask at that frame."""
        return self.annotation["masks"].get(obj, {}).get(cam, {}).get(str(int(frame)))

    def mask(self, obj: str, cam: str, frame: int, size=None) -> np.ndarray | None:
        rle = self.rle(obj, cam, frame)
        if rle is None:
            return None
        try:
            m = decode_rle(rle)
        except Exception as e:
            raise ValueError(f"undecodable mask for {where(self.take, obj, cam, frame)}: {e}") from e
        return m if size is None else resize_mask(m, *size)

    def source_mask(self, obj: str, cam: str, frame: int, size=None) -> np.ndarray:
        """The source mask of a sample (exo mask for exo2ego, ego mask for ego2exo), which must exist."""
        m = self.mask(obj, cam, frame, size)
        if m is None:
            raise ValueError(f"sample without a source mask: {where(self.take, obj, cam, frame)}")
        return m

    def native_size(self, cam: str) -> tuple[int, int]:
        return tuple(self.annotation["native_size"][cam])

    @functools.cached_property
    def _proposals(self) -> dict[int, ProposalSet]:
        return load_proposals(self.paths["proposals"])

    @functools.cached_property
    def _exo_proposals(self) -> dict[str, dict[int, ProposalSet]]:
        if not self.paths["exo_proposals"]:
            raise ValueError(f"no exo proposals given for take {self.take!r} (needed by the ego2exo direction)")
        return load_camera_proposals(self.paths["exo_proposals"])

    def proposals(self, frame: int, cam: str | None = None) -> ProposalSet | None:
        """The frame's proposals in camera ``cam`` (default: the ego camera); None when the proposer
        stored nothing for it (counted as zero)."""
        if cam is None or cam == self.annotation["ego_cam"]:
            return self._proposals.get(int(frame))
        if cam not in self._exo_proposals:
            raise ValueError(f"no exo proposals of camera {cam!r} in {self.paths['exo_proposals']} (take {self.take!r})")
        return self._exo_proposals[cam].get(int(frame))

    @functools.lru_cache(maxsize=64)
    def proposal_masks(self, frame: int, size: tuple[int, int], cam: str | None = None) -> np.ndarray:
        props = self.proposals(frame, cam)
        if props is None or len(props) == 0:
            return np.zeros((0, *size), bool)
        return props.masks(*size)

    @functools.cached_property
    def store(self) -> FeatureStore:
        if not self.paths["features"]:
            raise ValueError(f"no feature store given for take {self.take!r}")
        return FeatureStore(self.paths["features"])

    def features(self, cam: str, frame: int) -> np.ndarray:
        return self.store.read(cam, frame)

    def image(self, cam: str, frame: int) -> np.ndarray:
        if not self.paths["images"]:
            raise ValueError(f"no frame images given for take {self.take!r}")
        return load_frame(Path(self.paths["images"]) / cam / f"{int(frame)}.jpg", self.take, cam, int(frame))


class Corpus:
    """All takes a stage reads, keyed by take uid."""

    def __init__(self, annotations, proposals, features=None, images=None, exo_proposals=None):
        ann, props, feats, imgs = by_take(annotations), by_take(proposals), by_take(features), by_take(images)
        exo = by_take(exo_proposals)
        missing = sorted(set(ann) - set(props))
        if missing:
            raise FileNotFoundError(f"no proposals file for takes {missing}")
        self.takes = {t: TakeData(ann[t], props[t], feats.get(t), imgs.get(t), exo.get(t)) for t in ann}

    def __getitem__(self, take: str) -> TakeData:
        if take not in self.takes:
            raise KeyError(f"take {take!r} is not among the inputs of this stage")
        return self.takes[take]

    def geometry(self) -> Geometry:
        """Geometry recorded in the takes' feature stores, which must all agree (a store left
        by another backbone setting is an error, whichever take comes first)."""
        found: dict[str, tuple[Geometry, list[str]]] = {}  # by repr: a Geometry holds dicts
        for take, td in self.takes.items():
            g = Geometry.from_description(td.store.attrs["backbone"])
            found.setdefault(repr(g), (g, []))[1].append(take)
        if len(found) > 1:
            raise ValueError("feature stores of different backbone geometries: "
                             + "; ".join(f"takes {sorted(t)} have {g}" for g, t in found.values()))
        return next(iter(found.values()))[0]


def subset_rows(split_table, subset: str, *, direction: str) -> pd.DataFrame:
    """Rows of a split table (path or frame) of ``direction`` assigned to ``subset``, in a fixed
    order (a table without a direction column holds exo2ego rows)."""
    df = pd.read_parquet(split_table) if not isinstance(split_table, pd.DataFrame) else split_table
    Direction(direction)
    keep = (df["split"] == subset) & ((df["direction"] == direction) if "direction" in df else direction == "exo2ego")
    rows = df[keep].sort_values(["take_uid", "frame", "object", "exo_cam"], kind="stable")
    return rows.reset_index(drop=True)


class TrainingSet(torch.utils.data.Dataset):
    """Training samples: source mask + features (or image), 1 + ``negatives`` candidate masks.

    ``mode`` "pre-extracted" returns stored features in the store's dtype (float16, float32, or
    int8 with ``*_dequant``; ``batch_features`` turns them into float32 on the training device),
    "on-the-fly" returns frame images. Candidate sets are drawn from a generator seeded by
    (seed, epoch, index), so any worker count and any resume give the same samples.
    ``__getitems__`` builds a whole batch, reading each (store, camera)'s frames in one call.
    """

    def __init__(self, rows: pd.DataFrame, corpus: Corpus, geometry: Geometry, negatives: int, seed: int, mode: str,
                 *, direction: str):
        if mode not in ("pre-extracted", "on-the-fly"):
            raise ValueError(f"features must be 'pre-extracted' or 'on-the-fly', got {mode!r}")
        self.rows = rows.reset_index(drop=True)
        self.corpus, self.geometry, self.negatives, self.seed, self.mode = corpus, geometry, negatives, seed, mode
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
        d = self.direction
        if self.mode == "pre-extracted":
            for key, cams in (("src", rows[d.src_col]), ("dst", rows[d.dst_col])):
                values, dequant = self._stored(rows.take_uid.tolist(), cams.tolist(), rows.frame.tolist())
                batch[f"{key}_feat"] = torch.from_numpy(values)
                if dequant is not None:
                    batch[f"{key}_dequant"] = torch.from_numpy(dequant)
        else:
            batch["src_image"] = [self.corpus[t].image(c, int(f)) for t, c, f in zip(rows.take_uid, rows[d.src_col], rows.frame)]
            batch["dst_image"] = [self.corpus[t].image(c, int(f)) for t, c, f in zip(rows.take_uid, rows[d.dst_col], rows.frame)]
        return batch

    def _stored(self, takes: list, cams: list, frames: list) -> tuple[np.ndarray, np.ndarray | None]:
        return read_stored_batch(lambda take: self.corpus[take].store, takes, cams, frames)

    def _sample(self, i: int) -> dict:
        r = self.rows.iloc[i]
        td = self.corpus[r.take_uid]
        d = self.direction
        src_cam, dst_cam = r[d.src_col], r[d.dst_col]
        dst_size = self.geometry.input_size[d.dst_view]
        src = td.source_mask(r.object, src_cam, r.frame, self.geometry.input_size[d.src_view])
        gt = td.mask(r.object, dst_cam, r.frame, dst_size)
        if (gt is not None) != bool(r[d.present]):
            raise ValueError(f"{d.dst_view} presence in the split table disagrees with the annotation: {where(r.take_uid, r.object, dst_cam, r.frame)}")
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
            raise ValueError(f"camera {cam!r} of take {take!r} stores {store.stored_shape(cam)[:2]}, other samples of "
                             f"the batch {(shape, dtype)}: the batch's feature stores disagree")
        store.read_stored(cam, [frames[i] for i in members], out=(values, dequant), at=members)
    return values, dequant


ORDERS = ("shuffled", "take-blocks")


def epoch_batches(rows: pd.DataFrame, batch_size: int, seed: int, epoch: int, order: str = "shuffled") -> list[list[int]]:
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
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]


def training_loader(dataset: TrainingSet, batches: list[list[int]], workers: int, device: torch.device,
                    prefetch: int = 2) -> torch.utils.data.DataLoader:
    """Batches built whole by ``TrainingSet.__getitems__`` in ``workers`` processes, pinned for a GPU."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                       pin_memory=device.type == "cuda", prefetch_factor=prefetch if workers else None,
                                       persistent_workers=False)


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
        moved = [batch[f"{k}_feat"] if device is None else batch[f"{k}_feat"].to(device, non_blocking=True)
                 for k in ("src", "dst")]
        return tuple(dequantise(v, batch.get(f"{k}_dequant")) for v, k in zip(moved, ("src", "dst")))
    if backbone is None:
        raise ValueError("on-the-fly features need a backbone")
    src = backbone.features(batch["src_image"], "exo").cpu().clone(memory_format=torch.contiguous_format)
    dst = backbone.features(batch["dst_image"], "ego").cpu().clone(memory_format=torch.contiguous_format)
    return (src, dst) if device is None else (src.to(device), dst.to(device))
