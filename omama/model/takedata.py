"""Per-take data access: annotation masks, ego proposals, stored features and frame images of
the takes a stage reads, and the rows of a split table.

A sample is one row of a split table: (take, object, exo camera, ego camera, frame).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from omama.data.masks import decode_rle, resize_mask
from omama.direction import Direction
from omama.features.store import FeatureStore
from omama.io import load_frame, read_json, read_parquet, where
from omama.layout import frame_file
from omama.proposals.proposers import ProposalSet, load_camera_proposals, load_proposals

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
    """Lazy access to one take: annotation masks, ego proposals, stored features or frame images."""

    def __init__(
        self,
        annotation: str,
        proposals: str,
        features: str | None = None,
        images: str | None = None,
        exo_proposals: str | None = None,
    ):
        self.paths = {
            "annotation": annotation,
            "proposals": proposals,
            "features": features,
            "images": images,
            "exo_proposals": exo_proposals,
        }

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

    @functools.lru_cache(maxsize=64)  # noqa: B019 (one TakeData per take and stage: the cache lives as long)
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

    def image(self, cam: str, frame: int) -> np.ndarray:
        if not self.paths["images"]:
            raise ValueError(f"no frame images given for take {self.take!r}")
        return load_frame(Path(self.paths["images"]) / cam / frame_file(int(frame)), self.take, cam, int(frame))


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
            raise ValueError(
                "feature stores of different backbone geometries: "
                + "; ".join(f"takes {sorted(t)} have {g}" for g, t in found.values())
            )
        return next(iter(found.values()))[0]


def subset_rows(split_table, subset: str, *, direction: str) -> pd.DataFrame:
    """Rows of a split table (path or frame) of ``direction`` assigned to ``subset``, in a fixed
    order (a table without a direction column holds exo2ego rows)."""
    df = read_parquet(split_table) if not isinstance(split_table, pd.DataFrame) else split_table
    Direction(direction)
    keep = (df["split"] == subset) & ((df["direction"] == direction) if "direction" in df else direction == "exo2ego")
    rows = df[keep].sort_values(["take_uid", "frame", "object", "exo_cam"], kind="stable")
    return rows.reset_index(drop=True)
