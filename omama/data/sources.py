"""Data sources: the real Ego-Exo4D client (`egoexo`), or a local folder in the same layout.

Every source ends in the same place: ``R/raw/{take}/<relative path>`` holding the take's
videos, verified to be complete, with the relative paths of the take record's ``videos``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omama.io import atomic_path, read_json

log = logging.getLogger(__name__)

# The public release's bucket: the default of the `egoexo` command.
EGOEXO_BASE_DIR = "s3://ego4d-consortium-sharing/egoexo-public/"
EGOEXO_CLIENT = [sys.executable, "-m", "ego4d.egoexo.download.cli"]


class DownloadError(RuntimeError):
    """A download did not deliver what the take needs; the message names take and camera."""


def egoexo_command(out_dir: str | os.PathLike, part: str, cfg: dict, uids: list[str] | None = None) -> list[str]:
    """The `egoexo` command line for one part (never ``--delete``)."""
    cmd = [
        *EGOEXO_CLIENT,
        "-o",
        str(out_dir),
        "--parts",
        part,
        "-y",
        "--release",
        cfg["release"],
        "--s3_profile",
        cfg["s3_profile"],
        "--num_workers",
        str(cfg["num_workers"]),
    ]
    if cfg["base_dir"]:
        cmd += ["--base_dir", cfg["base_dir"]]
    if uids:
        cmd += ["--uids", *uids]
    return cmd


def run_egoexo(out_dir, part: str, cfg: dict, uids: list[str] | None = None, check=None) -> None:
    """Run the client for one part, retrying ``cfg["retries"]`` times.

    The client skips files already complete on disk, so a retry resumes. ``check`` (no
    arguments, raises on an incomplete result) runs after each attempt that exits 0,
    because the client exits 0 even when it could not size (and so skipped) an object.
    """
    attempts = int(cfg["retries"]) + 1
    cmd = egoexo_command(out_dir, part, cfg, uids)
    for attempt in range(1, attempts + 1):
        log.info("attempt %d/%d: %s", attempt, attempts, " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log.info("egoexo exit %d\n%s%s", proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
        try:
            if proc.returncode != 0:
                raise DownloadError(
                    f"egoexo --parts {part}{' --uids ' + ' '.join(uids) if uids else ''} exited with "
                    f"{proc.returncode} ({'no manifest readable: check credentials/profile' if proc.returncode == 1 else 'some downloads failed'}):\n"
                    f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
                )
            if check is not None:
                check()
            return
        except DownloadError:
            if attempt == attempts:
                raise
            time.sleep(min(2**attempt, 30))


def s3_url(cfg: dict, *parts: str) -> str:
    base = (cfg["base_dir"] or EGOEXO_BASE_DIR).rstrip("/")
    return "/".join([base, cfg["release"], *parts])


def fetch_manifest(part: str, cfg: dict, dest: str | os.PathLike, *, timeout: float) -> None:
    """Copy ``<base_dir>/<release>/<part>/manifest.json`` (the sizes the client knows) to ``dest``, waiting at
    most ``timeout`` seconds for the server."""
    import boto3
    from botocore.config import Config

    url = s3_url(cfg, part, "manifest.json")
    bucket, key = url[len("s3://") :].split("/", 1)
    client = boto3.Session(profile_name=cfg["s3_profile"]).client(
        "s3", config=Config(connect_timeout=timeout, read_timeout=timeout)
    )
    with atomic_path(dest) as tmp:
        try:
            client.download_file(bucket, key, str(tmp))
        except Exception as e:
            raise DownloadError(
                f"cannot read the manifest of part {part!r} at {url}: {e} (network_timeout: {timeout:g} s)"
            ) from e


def fetch_metadata(*, out_dir: str | os.PathLike, cfg: dict, timeout: float, splits=("train", "val")) -> None:
    """Metadata and annotations (two client runs) plus the video part's manifest into ``out_dir``
    (``timeout``: see ``fetch_manifest``; the client uses botocore's own timeouts); ``splits``: the
    relations_{split}.json files that must arrive (selection.annotation_splits)."""
    out_dir = Path(out_dir)
    relations = tuple(f"annotations/relations_{s}.json" for s in splits)
    for part, files in (("metadata", ("takes.json",)), ("annotations", relations)):

        def check(files=files, part=part):
            missing = [f for f in files if not (out_dir / f).is_file() or (out_dir / f).stat().st_size == 0]
            if missing:
                raise DownloadError(f"egoexo --parts {part} finished without {missing} in {out_dir}")

        run_egoexo(out_dir, part, cfg, check=check)
    fetch_manifest(cfg["part"], cfg, out_dir / "manifest.json", timeout=timeout)


def manifest_sizes(path: str | os.PathLike) -> dict[str, dict[str, int | None]]:
    """take uid -> {relative_path: size or None} from a part's manifest.json."""
    out: dict[str, dict[str, int | None]] = {}
    entries = read_json(path, "manifest")
    if not isinstance(entries, list):
        raise ValueError(f"manifest {path}: expected a list of entries, found {type(entries).__name__}")
    for i, entry in enumerate(entries):
        try:
            files = out.setdefault(entry["uid"], {})
            for p in entry["paths"]:
                files[p["relative_path"]] = p.get("size")
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"manifest {path}: entry #{i} (uid {entry.get('uid') if isinstance(entry, dict) else None!r}) "
                f"is malformed: missing or mistyped {e}"
            ) from e
    return out


def verify_videos(record: dict, root: str | os.PathLike) -> None:
    """Every camera's video is under ``root``, non-empty, and of the manifest's size when known."""
    sizes = record.get("video_sizes") or {}
    problems = []
    for cam, rel in sorted(record["videos"].items()):
        path = Path(root) / rel
        if not path.is_file():
            problems.append(f"camera {cam!r}: {rel} missing")
        elif path.stat().st_size == 0:
            problems.append(f"camera {cam!r}: {rel} is empty")
        elif sizes.get(cam) is not None and path.stat().st_size != sizes[cam]:
            problems.append(f"camera {cam!r}: {rel} has {path.stat().st_size} bytes, manifest says {sizes[cam]}")
    if problems:
        raise DownloadError(f"take {record['take_uid']!r} ({record['take_name']}): " + "; ".join(problems))


def download_take(*, record: dict, source: dict, source_root: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Bring one take's videos to ``out_dir/<relative path>`` (atomic, verified).

    ``source`` is config["source"]. ``egoexo``: the client downloads the take's part into a
    staging folder kept across kills (the client resumes), then it is verified and renamed.
    ``local``/``synthetic``: the videos are copied (the source stays intact). A take that still
    fails after the retries is an error naming it and the setting that leaves it out.
    """
    try:
        fetch_take(record, source, source_root, Path(out_dir))
    except DownloadError as e:
        uid = record["take_uid"]
        raise DownloadError(
            f"{e}\ntake {uid!r} ({record['take_name']}) could not be fetched"
            f"{' after ' + str(source['egoexo']['retries']) + ' retries' if source['kind'] == 'egoexo' else ''}; "
            f"to run without it, leave it out in the config:\n  selection:\n    exclude_takes: [{uid}]"
        ) from e


def fetch_take(record: dict, source: dict, source_root, out_dir: Path) -> None:
    """``download_take`` without the hint."""
    if source["kind"] == "egoexo":
        cfg = source["egoexo"]
        staging = out_dir.parent / f".{out_dir.name}.partial"
        staging.mkdir(parents=True, exist_ok=True)
        run_egoexo(staging, cfg["part"], cfg, uids=[record["take_uid"]], check=lambda: verify_videos(record, staging))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
        return
    verify_videos({**record, "video_sizes": None}, source_root)
    with atomic_path(out_dir) as tmp:
        for _cam, rel in sorted(record["videos"].items()):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(source_root) / rel, dest)
        verify_videos(
            {**record, "video_sizes": {c: (Path(source_root) / r).stat().st_size for c, r in record["videos"].items()}}, tmp
        )


def aws_problems(profile: str, key: str) -> list[str]:
    """Whether the AWS profile the `egoexo` client will use has credentials (files and env only, no network)."""
    import botocore.exceptions
    import botocore.session

    files = (
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
    )
    where = " or ".join(files)
    try:
        profiles = botocore.session.Session(profile="default").full_config.get("profiles", {})
    except botocore.exceptions.BotoCoreError as e:
        return [f"{key} {profile!r}: the AWS configuration in {where} cannot be read: {e}"]
    keys = ("aws_access_key_id", "credential_process", "sso_session", "sso_start_url", "role_arn", "web_identity_token_file")
    if any(k in profiles.get(profile, {}) for k in keys):
        return []
    if profile == "default" and os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return []
    state = "has no credentials" if profile in profiles else "is not defined"
    return [
        f"{key} {profile!r}: the AWS profile {state} in {where}. Ego-Exo4D needs a signed "
        f"licence (https://ego4ddataset.com/egoexo-license/); configure the keys it gives you with "
        f"`aws configure --profile {profile}` (they expire after about 14 days)"
    ]
