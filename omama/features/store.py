"""Pre-extracted backbone features: one chunked, sharded Zarr v3 store per (backbone, take).

Layout of ``R/features/{backbone}/{take}.zarr``: a group with one array per camera,
shape (frames, C, h, w), one frame per chunk (with its CRC32C: a damaged chunk is reported with its
camera and frame, never read), many frames per shard file. Group attrs
record the backbone (``describe()``), the store dtype, ``take_uid`` and, written last,
``complete: true``; each array's attrs hold its ``view`` and ``frames`` (the frame index
of each row).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr
from tqdm import tqdm
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from omama.config import entry
from omama.features.backbones import Backbone, load_backbone
from omama.features.shards import ChunkError, LayoutError, RowArray
from omama.io import FrameError, atomic_path, load_frame, read_frame_bytes, read_json, remove_abandoned, where
from omama.layout import frame_file

log = logging.getLogger(__name__)

SHARD_FRAMES = 32
SHARD_BYTES = 64 * 2**20  # at most this much raw data per shard (16 official-size float16 frames)
PREFETCH_BATCHES = 3
DEQUANT = ".dequant"  # int8 stores: array {camera}.dequant holds each frame's per-channel [scale; offset]


def take_frames(annotation: dict) -> tuple[list[str], dict[str, str], list[int]]:
    """(cameras ego first, view of each camera, frames to process) of a take's annotation."""
    cams = [annotation["ego_cam"], *annotation["exo_cams"]]
    views = {c: ("ego" if c == annotation["ego_cam"] else "exo") for c in cams}
    return cams, views, sorted(int(f) for f in annotation["subsample_idx"])


def compressors(name: str, level: int) -> list:
    """The Zarr v3 bytes-to-bytes codecs of a feature array for a config ``compressor`` name (``lz4``:
    blosc-lz4 with byte shuffle), then ``crc32c``: every chunk carries its checksum, checked on every read."""
    codecs = {
        "zstd": [ZstdCodec(level=level)],
        "blosc": [BloscCodec(cname="zstd", clevel=min(level, 9), shuffle="bitshuffle")],
        "lz4": [BloscCodec(cname="lz4", clevel=min(max(level, 1), 9), shuffle="shuffle")],
        "none": [],
    }
    if name not in codecs:
        raise ValueError(f"unknown compressor {name!r}; use zstd, blosc, lz4 or none")
    return [*codecs[name], Crc32cCodec()]


def to_host(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.cuda.Event | None]:
    """Start copying tensors to (pinned) host memory; with the event to wait on when on CUDA.

    The GPU then computes the next batch while the CPU waits for and writes this one.
    """
    if tensors[0].device.type != "cuda":
        return tensors, None
    hosts = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for host, t in zip(hosts, tensors):
        host.copy_(t, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return hosts, ready


def quantise(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes and (N, 2, C) float32 [scale; offset] per frame and channel, on the features' device.

    code = round((x - offset) / scale) in [-127, 127] with offset the channel's mid-range and
    scale its range / 254, so ``dequantise`` is within scale / 2 of x (QUANT_ERROR).
    """
    x = feats.float()
    lo, hi = x.amin(dim=(2, 3)), x.amax(dim=(2, 3))
    offset, scale = (hi + lo) / 2, (hi - lo) / 254
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round((x - offset[..., None, None]) / scale[..., None, None]).clamp_(-127, 127).to(torch.int8)
    return codes, torch.stack([scale, offset], dim=1)


def dequantise(values: torch.Tensor, dequant: torch.Tensor | None) -> torch.Tensor:
    """float32 features from stored values (float16/32, or int8 codes with their [scale; offset])."""
    if dequant is None:
        return values.float()
    dequant = dequant.to(values.device, non_blocking=True).float()
    return values.float() * dequant[:, 0, :, None, None] + dequant[:, 1, :, None, None]


QUANT_ERROR = "half a quantisation step: (channel max - channel min) / 508 of each frame"


class ShardBuffer:
    """Collects rows of one array and writes each full shard once, on the writer pool."""

    def __init__(self, rows: RowArray, pool: ThreadPoolExecutor, inflight: deque):
        self.rows, self.pool, self.inflight = rows, pool, inflight
        self.shard, self.filled = 0, 0
        self.buffer = None

    def add(self, values: np.ndarray) -> None:
        per = self.rows.rows_per_shard
        while len(values):
            n_shard = min(per, self.rows.shape[0] - self.shard * per)
            if self.buffer is None:
                self.buffer = np.empty((n_shard, *self.rows.shape[1:]), self.rows.dtype)
            n = min(len(values), n_shard - self.filled)
            self.buffer[self.filled : self.filled + n] = values[:n]
            self.filled += n
            values = values[n:]
            if self.filled == n_shard:
                self.inflight.append(self.pool.submit(self.rows.write_shard, self.shard, self.buffer))
                self.shard, self.filled, self.buffer = self.shard + 1, 0, None


class FeatureError(ValueError):
    """A backbone gave features that cannot be stored (NaN, inf); the message names take, camera and frame."""


def check_finite(rows: list[torch.Tensor], dtype: np.dtype, take: str, cam: str, frames: list[int]) -> None:
    """Refuse a batch whose stored values (float16/32 features, or int8's scale and offset, which a NaN or
    inf feature makes non-finite) are not all finite, naming the first such frame."""
    for values in rows:
        if values.dtype.is_floating_point:
            bad = (~torch.isfinite(values)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            if bad:
                beyond = (
                    f", or beyond the range of the store's {dtype.name} (use dtype: float32)" if dtype == np.float16 else ""
                )
                raise FeatureError(
                    f"non-finite features (NaN or inf) from the backbone for {where(take, cam=cam, frame=frames[bad[0]])}"
                    f" ({len(bad)} of the batch's {len(frames)} frames{beyond}); nothing was stored"
                )


class StoreError(ValueError):
    """A feature store is incomplete or damaged; the message names the store and what is wrong."""


def store_problems(path, group: zarr.Group) -> list[str]:
    """What is missing or inconsistent in a feature store (empty when it is whole)."""
    a = dict(group.attrs)
    missing = [k for k in ("take_uid", "cameras", "frames", "dtype", "backbone") if k not in a]
    if missing:
        return [f"group attributes {missing} missing"]
    frames, dtype, d = list(a["frames"]), np.dtype(a["dtype"]), a["backbone"]
    problems = []

    def stored(name):  # by name: listing the group warns about Snakemake's .snakemake_timestamp file
        member = group.get(name)
        return member if isinstance(member, zarr.Array) else None

    for cam in a["cameras"]:
        arr = stored(cam)
        if arr is None:
            problems.append(f"array of camera {cam!r} missing")
            continue
        view = arr.attrs.get("view")
        if view not in ("ego", "exo"):
            problems.append(f"camera {cam!r}: view {view!r} is not ego/exo")
            continue
        want = (len(frames), int(d["channels"]), *d["grid"][view])
        if tuple(arr.shape) != want or np.dtype(arr.dtype) != dtype or list(arr.attrs.get("frames", [])) != frames:
            problems.append(
                f"camera {cam!r}: shape {tuple(arr.shape)} dtype {arr.dtype} frames "
                f"{len(arr.attrs.get('frames', []))}, expected {want} {dtype} {len(frames)}"
            )
            continue
        needed = [(arr, cam)]
        if dtype == np.int8:
            dq = stored(f"{cam}{DEQUANT}")
            if dq is None or tuple(dq.shape) != (len(frames), 2, want[1]):
                problems.append(f"camera {cam!r}: int8 scale/offset array {cam}{DEQUANT} missing or misshapen")
                continue
            needed.append((dq, f"{cam}{DEQUANT}"))
        for array, name in needed:
            try:
                lost = RowArray(array, Path(path) / name).missing_shards()
            except LayoutError as e:
                problems.append(str(e))
                continue
            if lost:
                problems.append(f"array {name!r}: shard files {lost} missing")
    return problems


def check_store(path, group: zarr.Group) -> None:
    problems = store_problems(path, group)
    if problems:
        raise StoreError(
            f"broken feature store {path}: {'; '.join(problems)}. Delete it and extract it again "
            f"(snakemake ... -R features, or remove the directory)"
        )


def extract_features(
    *,
    annotation_json,
    images_dir,
    out_store,
    backbone_cfg: dict,
    device: str | None = None,
    workers: int = 2,
    shard_frames: int = SHARD_FRAMES,
    backbone: Backbone | None = None,
    name: str | None = None,
    write_threads: int | None = None,
) -> dict:
    """Write the features of every camera's frames in ``subsample_idx`` of one take to ``out_store``.

    ``name`` is the backbone's config name (recorded as ``backbone_name``); ``backbone`` an
    already loaded one (else built from ``backbone_cfg``).

    Frames are decoded by ``workers`` threads ahead of the network (with ``decode: device`` on CUDA the
    threads read the files and each batch is decoded on the device; the store's ``decode`` attribute says
    which), and full shards are encoded and written by ``write_threads`` threads (default: the config's
    ``write_threads``), so decoding, compute and compression overlap. The store is checked (every camera's array, shape,
    dtype, frames, shard files) before it is marked complete and moved into place. Returns a summary.
    """
    annotation = read_json(annotation_json, "annotation")
    take = annotation["take_uid"]
    images_dir = Path(images_dir)
    cams, views, frames = take_frames(annotation)
    paths = {(c, f): images_dir / c / frame_file(f) for c in cams for f in frames}
    for (c, f), p in paths.items():
        if not p.is_file():
            raise FrameError(f"missing frame image for {where(take, cam=c, frame=f)}: {p}")
    backbone_cfg = entry("backbones", backbone_cfg)  # the schema's defaults
    backbone = backbone or load_backbone(backbone_cfg, device)
    dtype = np.dtype(backbone_cfg["dtype"])
    codecs = compressors(backbone_cfg["compressor"], int(backbone_cfg["compression_level"]))
    batch_size = int(backbone_cfg["batch_size"])
    write_threads = max(1, write_threads or int(backbone_cfg["write_threads"]))
    describe = backbone.describe()
    batches = [(c, frames[i : i + batch_size]) for c in cams for i in range(0, len(frames), batch_size)]

    # decode: device -- the threads only read the files; each batch is decoded and resized on the CUDA device.
    on_device = backbone_cfg["decode"] == "device" and backbone.device.type == "cuda"
    fallbacks = 0

    def decode(cam: str, frame: int) -> np.ndarray:
        return backbone.resize(load_frame(paths[cam, frame], take, cam, frame), views[cam])

    def read(cam: str, frame: int) -> np.ndarray:
        return read_frame_bytes(paths[cam, frame], take, cam, frame)

    def network_input(cam: str, chunk: list[int], loaded: list[np.ndarray]) -> torch.Tensor:
        """The batch's input on the device: from the decoded frames, or (on_device) decoded there; a batch the
        device cannot decode is decoded on the CPU instead (a broken file then gets load_frame's error)."""
        nonlocal fallbacks
        if on_device:
            try:
                return backbone.prepare_jpegs(loaded, views[cam])
            except RuntimeError as e:
                fallbacks += 1
                log.warning("%s: frames %s not decoded on %s (%s); decoding them on the CPU", take, chunk, backbone.device, e)
                loaded = [decode(cam, f) for f in chunk]
        batch = torch.from_numpy(np.stack(loaded))
        return backbone.normalize(batch.pin_memory() if backbone.device.type == "cuda" else batch)

    remove_abandoned(out_store)  # temporaries of killed runs; those of live concurrent writers stay
    with (
        atomic_path(out_store) as tmp,
        ThreadPoolExecutor(max(1, workers)) as decoders,
        ThreadPoolExecutor(write_threads) as writers,
    ):
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.attrs.update(
            {
                "take_uid": take,
                "backbone_name": name,
                "backbone": describe,
                "dtype": dtype.name,
                "frames": frames,
                "cameras": cams,
                "decode": f"torchvision.io.decode_jpeg on {backbone.device}" if on_device else "opencv",
                "complete": False,
            }
        )
        if dtype == np.int8:
            group.attrs["quantisation"] = {
                "codes": "int8 in [-127, 127]",
                "dequantised": "code * scale + offset",
                "scale_offset": f"array {{camera}}{DEQUANT}: (frames, 2, channels) float32",
                "max_error": QUANT_ERROR,
            }
        inflight: deque[Future] = deque()
        sinks: dict[str, list[ShardBuffer]] = {}
        for c in cams:
            h, w = backbone.grid(views[c])
            shape = (len(frames), backbone.channels, h, w)
            shard = max(1, min(shard_frames, len(frames), SHARD_BYTES // (int(np.prod(shape[1:])) * dtype.itemsize)))
            parts = [(c, shape, dtype, codecs)]
            if dtype == np.int8:
                parts.append(
                    (f"{c}{DEQUANT}", (len(frames), 2, backbone.channels), np.dtype(np.float32), compressors("none", 0))
                )
            sinks[c] = []
            for key, shp, dt, cod in parts:
                array = group.create_array(
                    key,
                    shape=shp,
                    chunks=(1, *shp[1:]),
                    shards=(shard, *shp[1:]),
                    dtype=dt,
                    compressors=cod,
                    fill_value=0,
                    attributes={"view": views[c], "frames": frames},
                )
                sinks[c].append(ShardBuffer(RowArray(array, tmp / key), writers, inflight))
        started = time.perf_counter()  # the network loaded: what follows streams the frames
        pending: deque[tuple[str, list[int], list[Future]]] = deque()
        todo = iter(batches)

        def prefetch() -> None:
            for cam, chunk in itertools.islice(todo, 1):
                pending.append((cam, chunk, [decoders.submit(read if on_device else decode, cam, f) for f in chunk]))

        for _ in range(PREFETCH_BATCHES):
            prefetch()
        with tqdm(total=len(frames) * len(cams), desc=f"features {take}", mininterval=5) as bar:
            out_dtype = torch.float16 if dtype == np.float16 else torch.float32
            waiting: deque[tuple[str, list[int], list[torch.Tensor], torch.cuda.Event | None]] = deque()
            while pending or waiting:
                if pending:
                    cam, chunk, futures = pending.popleft()
                    prefetch()
                    feats = backbone.encode(network_input(cam, chunk, [f.result() for f in futures]), views[cam])
                    outs = list(quantise(feats)) if dtype == np.int8 else [feats.to(out_dtype)]
                    waiting.append((cam, chunk, *to_host(outs)))
                    bar.update(len(futures))
                if len(waiting) > 1 or not pending:
                    done_cam, done_frames, rows, ready = waiting.popleft()
                    if ready is not None:
                        ready.synchronize()
                    check_finite(rows, dtype, take, done_cam, done_frames)
                    for sink, values in zip(sinks[done_cam], rows):
                        sink.add(values.numpy())
                while len(inflight) > 2 * write_threads:
                    inflight.popleft().result()
            for f in inflight:
                f.result()
        check_store(tmp, zarr.open_group(tmp, mode="r", zarr_format=3))
        if fallbacks:
            group.attrs["decode_fallback_batches"] = fallbacks
        group.attrs["complete"] = True
    log.info(
        "features of take %s: %d cameras x %d frames -> %s in %.3f s (network loaded)",
        take,
        len(cams),
        len(frames),
        out_store,
        time.perf_counter() - started,
    )
    return {"take_uid": take, "cameras": cams, "frames": len(frames), "backbone": describe}


class FeatureStore:
    """Read-only access to a complete, checked feature store: ``.frames(cam)``, ``.read(cam, frame)``,
    ``.read_stored(cam, frames)`` (stored dtype, for dequantising on the device)."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"no feature store at {self.path}")
        self.group = zarr.open_group(self.path, mode="r", zarr_format=3)
        self.attrs = dict(self.group.attrs)
        if self.attrs.get("complete") is not True:
            raise StoreError(f"incomplete feature store {self.path} (extraction did not finish); delete it and re-run")
        check_store(self.path, self.group)
        self.cameras = list(self.attrs["cameras"])
        self.dtype = np.dtype(self.attrs["dtype"])
        self._arrays = {c: self.group[c] for c in self.cameras}
        self._direct = {c: RowArray(a, self.path / c) for c, a in self._arrays.items()}
        self._dequant = (
            {c: RowArray(self.group[f"{c}{DEQUANT}"], self.path / f"{c}{DEQUANT}") for c in self.cameras}
            if self.dtype == np.int8
            else {}
        )
        self._rows = {c: {int(f): i for i, f in enumerate(a.attrs["frames"])} for c, a in self._arrays.items()}

    def frames(self, cam: str) -> list[int]:
        return list(self._rows[self._cam(cam)])

    def view(self, cam: str) -> str:
        return self._arrays[self._cam(cam)].attrs["view"]

    def read(self, cam: str, frame: int) -> np.ndarray:
        """float32 (C, h, w) of one frame."""
        return self.read_many(cam, [frame])[0]

    def read_many(self, cam: str, frames: list[int]) -> np.ndarray:
        """float32 (N, C, h, w) of several frames of one camera (dequantised on the host)."""
        values, dequant = self.read_stored(cam, frames)
        return dequantise(torch.from_numpy(values), None if dequant is None else torch.from_numpy(dequant)).numpy()

    def read_stored(self, cam: str, frames, out: tuple | None = None, at=None) -> tuple[np.ndarray, np.ndarray | None]:
        """(values (N, C, h, w) in the stored dtype, int8 stores' (N, 2, C) [scale; offset] or None);
        or into ``out`` = (values, dequant or None) at rows ``at`` (see ``RowArray.read``)."""
        rows = self._rows[self._cam(cam)]
        missing = [f for f in frames if int(f) not in rows]
        if missing:
            raise KeyError(
                f"frames {missing} of camera {cam!r} are not in feature store {self.path} "
                f"(take {self.attrs.get('take_uid')!r})"
            )
        index = [rows[int(f)] for f in frames]
        values_out, dequant_out = out or (None, None)
        try:
            dequant = self._dequant[cam].read(index, dequant_out, at) if self._dequant else None
            return self._direct[cam].read(index, values_out, at), dequant
        except ChunkError as e:
            frame = self._arrays[cam].attrs["frames"][e.row]
            raise StoreError(
                f"damaged feature store {self.path}: camera {cam!r}, frame {frame} (take "
                f"{self.attrs.get('take_uid')!r}): {e}. Delete the store and extract it again "
                f"(snakemake ... -R features, or remove the directory)"
            ) from e

    def stored_shape(self, cam: str) -> tuple[tuple, np.dtype, tuple | None]:
        """(row shape, dtype, dequant row shape or None) of a camera's stored features."""
        direct = self._direct[self._cam(cam)]
        return direct.shape[1:], direct.dtype, (self._dequant[cam].shape[1:] if self._dequant else None)

    def _cam(self, cam: str) -> str:
        if cam not in self._rows:
            raise KeyError(f"camera {cam!r} is not in feature store {self.path} (cameras: {self.cameras})")
        return cam
