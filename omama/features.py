"""Pre-extracted backbone features: one chunked, sharded Zarr v3 store per (backbone, take).

Layout of ``R/features/{backbone}/{take}.zarr``: a group with one array per camera,
shape (frames, C, h, w), one frame per chunk, many frames per shard file. Group attrs
record the backbone (``describe()``), the store dtype, ``take_uid`` and, written last,
``complete: true``; each array's attrs hold its ``view`` and ``frames`` (the frame index
of each row).
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr
from PIL import Image
from tqdm import tqdm
from zarr.codecs import BloscCodec, ZstdCodec

from omama.backbones import Backbone, load_backbone
from omama.io import atomic_path, read_json

log = logging.getLogger(__name__)

SHARD_FRAMES = 32
PREFETCH_BATCHES = 3


class FrameError(ValueError):
    """A frame image is missing or cannot be decoded; the message names take, camera and frame."""


def load_frame(path: Path, take: str, cam: str, frame: int) -> np.ndarray:
    """Decode one frame JPEG to uint8 HxWx3 RGB, with an error naming take, camera and frame."""
    if not path.is_file():
        raise FrameError(f"missing frame image for take {take!r}, camera {cam!r}, frame {frame}: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise FrameError(f"cannot decode frame image for take {take!r}, camera {cam!r}, frame {frame}: "
                         f"{path}: {e}") from e


def take_frames(annotation: dict) -> tuple[list[str], dict[str, str], list[int]]:
    """(cameras ego first, view of each camera, frames to process) of a take's annotation."""
    cams = [annotation["ego_cam"], *annotation["exo_cams"]]
    views = {c: ("ego" if c == annotation["ego_cam"] else "exo") for c in cams}
    return cams, views, sorted(int(f) for f in annotation["subsample_idx"])


def compressors(name: str, level: int) -> list:
    """Zarr v3 codecs for a config ``compressor`` name."""
    if name == "zstd":
        return [ZstdCodec(level=level)]
    if name == "blosc":
        return [BloscCodec(cname="zstd", clevel=min(level, 9), shuffle="bitshuffle")]
    if name == "none":
        return []
    raise ValueError(f"unknown compressor {name!r}; use zstd, blosc or none")


def to_host(feats: torch.Tensor) -> tuple[torch.Tensor, "torch.cuda.Event | None"]:
    """Start copying features to (pinned) host memory; with the event to wait on when on CUDA.

    The GPU then computes the next batch while the CPU waits for and writes this one.
    """
    if feats.device.type != "cuda":
        return feats, None
    host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
    host.copy_(feats, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return host, ready


class ShardWriter:
    """Collects rows of one camera array and writes whole shards (no read-modify-write)."""

    def __init__(self, array: zarr.Array, shard_frames: int):
        self.array = array
        self.shard_frames = shard_frames
        self.buffer = np.empty((shard_frames, *array.shape[1:]), dtype=array.dtype)
        self.start = 0
        self.filled = 0

    def add(self, rows: np.ndarray) -> None:
        while len(rows):
            n = min(len(rows), self.shard_frames - self.filled)
            self.buffer[self.filled:self.filled + n] = rows[:n]
            self.filled += n
            rows = rows[n:]
            if self.filled == self.shard_frames or self.start + self.filled == self.array.shape[0]:
                self.array[self.start:self.start + self.filled] = self.buffer[:self.filled]
                self.start += self.filled
                self.filled = 0


def extract_features(annotation_json, images_dir, out_store, backbone_cfg: dict, device: str = "cpu",
                     workers: int = 2, shard_frames: int = SHARD_FRAMES, backbone: Backbone | None = None,
                     name: str | None = None) -> dict:
    """Write the features of every camera's frames in ``subsample_idx`` of one take to ``out_store``.

    ``name`` is the backbone's config name (recorded as ``backbone_name``); ``backbone`` an
    already loaded one (else built from ``backbone_cfg``).

    Frames are decoded by ``workers`` threads ahead of the network and the store is written by
    its own thread, so decoding, compute and compression overlap. Returns a summary.
    """
    annotation = read_json(annotation_json, "annotation")
    take = annotation["take_uid"]
    images_dir = Path(images_dir)
    cams, views, frames = take_frames(annotation)
    paths = {(c, f): images_dir / c / f"{f}.jpg" for c in cams for f in frames}
    for (c, f), p in paths.items():
        if not p.is_file():
            raise FrameError(f"missing frame image for take {take!r}, camera {c!r}, frame {f}: {p}")
    backbone = backbone or load_backbone(backbone_cfg, device)
    dtype = np.dtype(backbone_cfg.get("dtype", "float16"))
    codecs = compressors(backbone_cfg.get("compressor", "zstd"), int(backbone_cfg.get("compression_level", 3)))
    batch_size = int(backbone_cfg.get("batch_size", 8))
    describe = backbone.describe()
    batches = [(c, frames[i:i + batch_size]) for c in cams for i in range(0, len(frames), batch_size)]

    def decode(cam: str, frame: int) -> np.ndarray:
        return backbone.resize(load_frame(paths[cam, frame], take, cam, frame), views[cam])

    for stale in Path(out_store).parent.glob(f".tmp-{Path(out_store).name}-*"):
        log.info("removing %s left by an interrupted extraction", stale)
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_path(out_store) as tmp, ThreadPoolExecutor(max(1, workers)) as decoders, \
            ThreadPoolExecutor(1) as writer:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.attrs.update({"take_uid": take, "backbone_name": name, "backbone": describe, "dtype": dtype.name, "frames": frames,
                            "cameras": cams, "complete": False})
        sinks = {}
        for c in cams:
            h, w = backbone.grid(views[c])
            shape = (len(frames), backbone.channels, h, w)
            shard = max(1, min(shard_frames, len(frames)))
            array = group.create_array(c, shape=shape, chunks=(1, *shape[1:]), shards=(shard, *shape[1:]),
                                       dtype=dtype, compressors=codecs, fill_value=0,
                                       attributes={"view": views[c], "frames": frames})
            sinks[c] = ShardWriter(array, shard)
        pending: deque[tuple[str, list[Future]]] = deque()
        writes: deque[Future] = deque()
        todo = iter(batches)

        def prefetch() -> None:
            for cam, chunk in itertools.islice(todo, 1):
                pending.append((cam, [decoders.submit(decode, cam, f) for f in chunk]))

        for _ in range(PREFETCH_BATCHES):
            prefetch()
        with tqdm(total=len(frames) * len(cams), desc=f"features {take}", mininterval=5) as bar:
            out_dtype = torch.float16 if dtype == np.float16 else torch.float32
            inflight: deque[tuple[str, torch.Tensor, torch.cuda.Event | None]] = deque()
            while pending or inflight:
                if pending:
                    cam, futures = pending.popleft()
                    prefetch()
                    batch = torch.from_numpy(np.stack([f.result() for f in futures]))
                    if backbone.device.type == "cuda":
                        batch = batch.pin_memory()
                    feats = backbone.encode(backbone.normalize(batch), views[cam]).to(out_dtype)
                    inflight.append((cam, *to_host(feats)))
                    bar.update(len(futures))
                if len(inflight) > 1 or not pending:
                    done_cam, rows, ready = inflight.popleft()
                    if ready is not None:
                        ready.synchronize()
                    writes.append(writer.submit(sinks[done_cam].add, rows.numpy()))
                while len(writes) > PREFETCH_BATCHES:
                    writes.popleft().result()
            for f in writes:
                f.result()
        group.attrs["complete"] = True
    log.info("features of take %s: %d cameras x %d frames -> %s", take, len(cams), len(frames), out_store)
    return {"take_uid": take, "cameras": cams, "frames": len(frames), "backbone": describe}


class FeatureStore:
    """Read-only access to a complete feature store: ``.frames(cam)``, ``.read(cam, frame)``."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"no feature store at {self.path}")
        self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
        self.attrs = dict(self.group.attrs)
        if self.attrs.get("complete") is not True:
            raise ValueError(f"incomplete feature store {self.path} (extraction did not finish); delete it and re-run")
        self.cameras = list(self.attrs["cameras"])
        self._arrays = {c: self.group[c] for c in self.cameras}
        self._rows = {c: {int(f): i for i, f in enumerate(a.attrs["frames"])} for c, a in self._arrays.items()}

    def frames(self, cam: str) -> list[int]:
        return list(self._rows[self._cam(cam)])

    def view(self, cam: str) -> str:
        return self._arrays[self._cam(cam)].attrs["view"]

    def read(self, cam: str, frame: int) -> np.ndarray:
        """float32 (C, h, w) of one frame."""
        return self.read_many(cam, [frame])[0]

    def read_many(self, cam: str, frames: list[int]) -> np.ndarray:
        """float32 (N, C, h, w) of several frames of one camera."""
        rows = self._rows[self._cam(cam)]
        missing = [f for f in frames if int(f) not in rows]
        if missing:
            raise KeyError(f"frames {missing} of camera {cam!r} are not in feature store {self.path} "
                           f"(take {self.attrs.get('take_uid')!r})")
        array = self._arrays[cam]
        out = np.empty((len(frames), *array.shape[1:]), dtype=np.float32)
        for i, f in enumerate(frames):
            out[i] = array[rows[int(f)]]
        return out

    def _cam(self, cam: str) -> str:
        if cam not in self._rows:
            raise KeyError(f"camera {cam!r} is not in feature store {self.path} (cameras: {self.cameras})")
        return cam
