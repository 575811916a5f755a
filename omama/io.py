"""Atomic outputs and small file helpers shared by every stage."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def where(take=None, obj=None, cam=None, frame=None) -> str:
    """``take 'x', object 'y', camera 'z', frame 3``: the location an error message names (given parts only)."""
    parts = [f"{k} {v!r}" for k, v in (("take", take), ("object", obj), ("camera", cam), ("frame", frame)) if v is not None]
    return ", ".join(parts)


class FrameError(ValueError):
    """A frame image is missing or cannot be decoded; the message names take, camera and frame."""


def read_image(path, flags: int, what: str, error: type[Exception] = ValueError):
    """Decode an image file with OpenCV (``flags``: cv2.IMREAD_*), or raise ``error`` naming ``what`` and the file.

    Every format OpenCV reads is accepted. A JPEG cut short (no end-of-image marker after its last
    scan) is an error, not a partly grey image (OpenCV 4 decodes it with a warning only).
    """
    import cv2
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise error(f"missing {what}: {path}")
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise error(f"cannot read {what}: {path}: {e}") from e
    image = cv2.imdecode(data, flags) if data.size else None
    problem = "not an image OpenCV can decode" if image is None else truncated_jpeg(data.tobytes())
    if problem is None:
        return image
    raise error(f"cannot decode {what}: {path}: {problem}")


def truncated_jpeg(raw: bytes) -> str | None:
    """What is wrong with a JPEG cut short (no end-of-image marker after its last scan); None for any other file."""
    if raw[:2] == b"\xff\xd8" and raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda"):
        return "truncated JPEG (no end-of-image marker after the last scan)"
    return None


def read_frame_bytes(path, take: str, cam: str, frame: int):
    """The bytes of one frame's JPEG (uint8 numpy, for a decoder on the device), with ``load_frame``'s errors for a
    missing, unreadable or truncated file."""
    import numpy as np

    what = f"frame image for {where(take, cam=cam, frame=frame)}"
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise FrameError(f"cannot read {what}: {path}: {e}") from e
    problem = "empty file" if not data.size else truncated_jpeg(data.tobytes())
    if problem:
        raise FrameError(f"cannot decode {what}: {path}: {problem}")
    return data


def load_frame(path, take: str, cam: str, frame: int):
    """Decode one frame image (JPEG) to uint8 HxWx3 RGB (numpy), with an error naming take, camera and frame.

    OpenCV's decoder: libjpeg-turbo like Pillow's, the same pixels (tests/test_io.py checks the JPEG
    variants against Pillow), and it holds no GIL for the whole decode, so the extraction's decoding
    threads keep up with a GPU. The EXIF orientation is ignored, as Pillow's ``Image.open`` does.
    """
    import cv2

    what = f"frame image for {where(take, cam=cam, frame=frame)}"
    image = read_image(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, what, FrameError)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _owner_tag() -> str:
    """``{host}-{pid}-``: names a temporary sibling after the process writing it."""
    return f"{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def abandoned_temporaries(path: str | os.PathLike) -> list[Path]:
    """The ``.tmp-{name}-{host}-{pid}-{random}`` siblings of ``path`` whose writer provably died.

    Provably: written on this host by a process id that no longer exists. Siblings of live
    writers (any concurrent run, whatever its working directory), of other hosts, or of an
    unknown naming are kept: removing them could break a writer that is still running.
    """
    path = Path(path)
    host = socket.gethostname()
    out = []
    for p in path.parent.glob(f".tmp-{path.name}-*"):
        owner, _, rest = p.name[len(f".tmp-{path.name}-") :].rpartition("-")
        h, _, pid = owner.rpartition("-")
        if rest and h == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            out.append(p)
    return out


def remove_abandoned(path: str | os.PathLike) -> int:
    """Delete the temporaries of ``path`` left by killed writers (see ``abandoned_temporaries``)."""
    stale = abandoned_temporaries(path)
    for p in stale:
        log.info("removing %s left by a killed writer", p)
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


# A writer failing with less free space than this left is taken to have run out of space
# (some writers do not say so: torch.save reports "unexpected pos", cv2.imwrite returns False).
LOW_SPACE = 1 << 20
UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.|^\.|^$")


def safe_name(value, what: str, context: str = "") -> str:
    """``value`` if it can be one path component: a non-empty string without path separators,
    "..", a leading dot or control characters; else a ValueError naming ``what`` (and ``context``)."""
    if not isinstance(value, str) or UNSAFE_NAME.search(value):
        raise ValueError(
            f"{what} {value!r}{' (' + context + ')' if context else ''} is not a safe name: it becomes a file or folder name, so it must be a "
            f"non-empty string without '/', '\\', '..', a leading '.' or control characters"
        )
    return value


def out_of_space(error: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC/EDQUOT, or (for writers that hide the
    errno) almost no space left in ``folder``."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Works for files and directories (e.g. Zarr stores). A killed or failed writer leaves
    only a hidden ``.tmp-{name}-{host}-{pid}-{random}`` sibling, never something that looks
    finished; each writer has its own, so concurrent writers of one path never share one and
    the last to finish wins (a directory it replaces is first moved into its own temporary).
    A write that runs out of space raises OSError(ENOSPC, "no space left on device at <path>").
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-{_owner_tag()}", dir=path.parent))
        target = tmp / path.name
        yield target
        if not target.exists():
            raise FileNotFoundError(f"writer produced nothing for {path}")
        for attempt in range(100):
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(FileNotFoundError):  # another writer may move it first
                    os.rename(path, tmp / f"replaced-{attempt}")
            try:
                os.replace(target, path)
                break
            except OSError as e:  # a concurrent writer renamed its directory onto path meanwhile
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 99:
                    raise
    except Exception as e:
        if out_of_space(e, path.parent if path.parent.exists() else Path(path.anchor or ".")):
            free = shutil.disk_usage(path.parent).free if path.parent.exists() else "?"
            raise OSError(
                errno.ENOSPC, f"no space left on device at {path} ({free} bytes free; free some space and run again): {e}"
            ) from e
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def finite(obj):
    """``obj`` with every non-finite float (NaN, inf: an undefined figure) replaced by None, which JSON
    writes as ``null`` (strict JSON has no NaN); dicts, lists and tuples are walked."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path, obj, indent: int | None = None) -> None:
    """Strict JSON, written atomically: an undefined figure (NaN, inf) is ``null``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(finite(obj), f, indent=indent, allow_nan=False)


def write_record(path, value, *, preview: bool = False) -> str:
    """A settings record: ``value`` as canonical JSON at ``path``, rewritten (atomically, with a new time)
    only when it differs from the file, so a job reading it as an input re-runs exactly when its settings
    change (Snakemake compares times). A new record is dated to the epoch: it never makes outputs that
    already exist look older than their settings. With ``preview`` (a dry run) a changed record stays as it
    is, the outputs' settings; the new one goes to ``preview.json`` beside it, with the current time, and
    its path is returned instead, so the plan shows the re-run and a reverted config re-runs nothing.
    Returns the path the job reads."""
    path = Path(path)
    text = json.dumps(finite(value), sort_keys=True, indent=1, default=str) + "\n"
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = None
    if old is not None and old != text and preview:
        path = path.with_name("preview.json")
    if old != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        if old is None:
            os.utime(path, (0, 0))
    return str(path)


def read_json(path, what: str = "JSON file"):
    """Read JSON with an error that names the file and the position of the fault."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed {what} {path}: {e.msg} at line {e.lineno} column {e.colno}") from e
    except FileNotFoundError as e:
        raise FileNotFoundError(f"missing {what}: {path}") from e


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_torch(path, obj) -> None:
    """``torch.save`` atomically; serialised in memory first, so a full disk raises ENOSPC
    naming ``path`` (torch's own file writer only says "unexpected pos ...")."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def write_image(path, image, params=()) -> None:
    """``cv2.imwrite`` that raises: encoded in memory, then written by Python (a full disk is an
    OSError ENOSPC, where cv2.imwrite only returns False)."""
    import cv2

    ok, data = cv2.imencode(Path(path).suffix, image, list(params))
    if not ok:
        raise ValueError(f"cannot encode image {path}")
    Path(path).write_bytes(data.tobytes())


def write_parquet(path, df) -> None:
    """A table, atomically, every data page with its CRC32 (``read_parquet`` checks them)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, write_page_checksum=True)


def read_parquet(path):
    """A table written by ``write_parquet``, every page checked against its CRC32: a damaged file is an
    error naming it, not a silently changed table."""
    import pandas as pd

    try:
        return pd.read_parquet(path, page_checksum_verification=True)
    except FileNotFoundError:
        raise
    except OSError as e:  # pyarrow reports damage (a checksum mismatch, a broken footer) as OSError
        raise ValueError(f"cannot read table {path}: {e}; delete it and re-run the stage that writes it") from e


def load_torch(path, **kwargs):
    """``torch.load`` after checking every record of the file against its CRC32 (torch writes them and
    never checks them on load): a damaged checkpoint is an error naming it, not other weights."""
    import zipfile

    import torch

    if zipfile.is_zipfile(path):  # the legacy (pre-1.6) format carries no checksums
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError) as e:
            bad = str(e)
        if bad:
            raise ValueError(
                f"damaged file {path}: {bad} does not match its CRC32; delete it and re-run the stage that writes it"
            )
    return torch.load(path, **kwargs)
