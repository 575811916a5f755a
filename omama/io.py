"""Atomic outputs and small file helpers shared by every stage."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


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
        owner, _, rest = p.name[len(f".tmp-{path.name}-"):].rpartition("-")
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Works for files and directories (e.g. Zarr stores). A killed or failed writer leaves
    only a hidden ``.tmp-{name}-{host}-{pid}-{random}`` sibling, never something that looks
    finished; each writer has its own, so concurrent writers of one path never share one and
    the last to finish wins (a directory it replaces is first moved into its own temporary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-{_owner_tag()}", dir=path.parent))
    target = tmp / path.name
    try:
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path, obj, indent: int | None = None) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)


def read_json(path, what: str = "JSON file"):
    """Read JSON with an error that names the file and the position of the fault."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed {what} {path}: {e.msg} at line {e.lineno} column {e.colno}") from e
    except FileNotFoundError as e:
        raise FileNotFoundError(f"missing {what}: {path}") from e


def write_parquet(path, df) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
