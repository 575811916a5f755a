"""The real `egoexo` client against a loopback S3 (moto): metadata, annotations, one take, a missing video."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import boto3
import pytest
from conftest import run_snakemake, tiny_config
from data_fixtures import SELECTION

from omama.data.sources import DownloadError, download_take, fetch_metadata
from omama.data.takes import EXCLUDED, NOT_IN_RELEASE, build_index

BUCKET = "egoexo-test"
PART = "downscaled_takes/448"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_profile(tmp_path, monkeypatch, s3_server):
    """A [default] profile with dummy keys pointing at the loopback S3, for this process and the client's."""
    cfg = tmp_path / "aws-config"
    cfg.write_text(
        f"[default]\nregion = us-east-1\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        f"endpoint_url = {s3_server}\n"
    )
    for var in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    return boto3.Session(profile_name="default").client("s3")


def publish(
    client,
    source: Path,
    prefix: str,
    take_uids: list[str],
    unknown_size: set[str] = frozenset(),
    not_uploaded: set[str] = frozenset(),
) -> None:
    """Upload takes of ``source`` as the release `prefix`/v2 with manifests for metadata, annotations and the 448-px part."""
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    base = f"s3://{BUCKET}/{prefix}/v2"

    def put(key: str, path: Path) -> str:
        client.upload_file(str(path), BUCKET, f"{prefix}/v2/{key}")
        return f"{base}/{key}"

    def manifest(part: str, entries: list[dict]) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/v2/{part}/manifest.json", Body=json.dumps(entries).encode())

    def spec(source_path, rel, path, size_known=True):
        return {
            "source_path": source_path,
            "relative_path": rel,
            "views": None,
            "universities": None,
            "file_type": Path(rel).suffix[1:],
            "size": path.stat().st_size if size_known else None,
            "checksum": None,
        }

    manifest(
        "metadata",
        [
            {
                "uid": "metadata",
                "paths": [spec(put("metadata/takes.json", source / "takes.json"), "takes.json", source / "takes.json")],
                "splits": None,
                "benchmarks": None,
            }
        ],
    )
    manifest(
        "annotations",
        [
            {
                "uid": "annotations",
                "splits": None,
                "benchmarks": ["relations"],
                "paths": [
                    spec(
                        put(f"annotations/relations_{s}.json", source / f"annotations/relations_{s}.json"),
                        f"annotations/relations_{s}.json",
                        source / f"annotations/relations_{s}.json",
                    )
                    for s in ("train", "val", "test")
                    if (source / f"annotations/relations_{s}.json").is_file()
                ],
            }
        ],
    )
    entries = []
    for take in json.loads((source / "takes.json").read_text()):
        if take["take_uid"] not in take_uids:
            continue
        paths = []
        for cam_streams in take["frame_aligned_videos"].values():
            for stream in cam_streams.values():
                local = source / take["root_dir"] / stream["relative_path"]
                rel = f"{take['root_dir']}/frame_aligned_videos/downscaled/448/{local.name}"
                key = f"{PART}/{take['take_uid']}/{local.name}"
                src = f"{base}/{key}" if local.stem in not_uploaded else put(key, local)
                paths.append(spec(src, rel, local, size_known=local.stem not in unknown_size))
        entries.append({"uid": take["take_uid"], "paths": paths, "splits": ["train"], "benchmarks": ["correspondence"]})
    manifest(PART, entries)


def egoexo_cfg(prefix: str) -> dict:
    return {
        "part": PART,
        "release": "v2",
        "s3_profile": "default",
        "base_dir": f"s3://{BUCKET}/{prefix}/",
        "retries": 0,
        "num_workers": 2,
    }


def test_missing_video_of_unknown_size_is_an_error_naming_take_and_camera_and_a_rerun_resumes(
    aws_profile, synthetic_source, tmp_path
):
    take_uid = json.loads((synthetic_source / "takes.json").read_text())[1]["take_uid"]
    # cam02 is in the manifest with no size but was never uploaded: the client warns, skips it and exits 0.
    publish(aws_profile, synthetic_source, "missing", [take_uid], unknown_size={"cam02"}, not_uploaded={"cam02"})
    source = {"kind": "egoexo", "egoexo": egoexo_cfg("missing")}
    fetch_metadata(out_dir=tmp_path / "source", cfg=source["egoexo"], timeout=30)
    build_index(
        source_root=tmp_path / "source",
        selection=SELECTION,
        takes_out=tmp_path / "index/takes.json",
        records_dir=tmp_path / "index/takes",
        summary_out=tmp_path / "index/summary.json",
        downscaled=True,
        manifest=tmp_path / "source/manifest.json",
    )
    record = json.loads((tmp_path / "index/takes" / f"{take_uid}.json").read_text())
    with pytest.raises(DownloadError, match=rf"take '{take_uid}'.*camera 'cam02'.*missing"):
        download_take(record=record, source=source, source_root=None, out_dir=tmp_path / "raw" / take_uid)
    assert not (tmp_path / "raw" / take_uid).exists()
    # What did arrive stays in the staging folder: once the object is there, a rerun resumes.
    arrived = tmp_path / "raw" / f".{take_uid}.partial" / record["videos"]["cam01"]
    before = arrived.stat().st_mtime_ns
    local = synthetic_source / record["videos"]["cam02"].replace("downscaled/448/", "")
    aws_profile.upload_file(str(local), BUCKET, f"missing/v2/{PART}/{take_uid}/cam02.mp4")
    download_take(record=record, source=source, source_root=None, out_dir=tmp_path / "raw" / take_uid)
    assert (tmp_path / "raw" / take_uid / record["videos"]["cam02"]).read_bytes() == local.read_bytes()
    assert (tmp_path / "raw" / take_uid / record["videos"]["cam01"]).stat().st_mtime_ns == before  # not fetched again


def test_take_missing_from_the_release_is_a_counted_skip_and_a_failed_download_names_the_take(
    aws_profile, synthetic_source, tmp_path
):
    takes = [t["take_uid"] for t in json.loads((synthetic_source / "takes.json").read_text())]
    annotated = set(json.loads((synthetic_source / "annotations/relations_train.json").read_text())["annotations"])
    annotated |= set(json.loads((synthetic_source / "annotations/relations_val.json").read_text())["annotations"])
    withheld, broken, *published = [t for t in takes if t in annotated]
    # `withheld` is in no manifest (not in the release); `broken` is listed with its size but cam01 never uploaded
    publish(aws_profile, synthetic_source, "release", [broken, *published], not_uploaded={"cam01"})
    source = {"kind": "egoexo", "egoexo": egoexo_cfg("release")}
    fetch_metadata(out_dir=tmp_path / "source", cfg=source["egoexo"], timeout=30)
    lean = build_index(
        source_root=tmp_path / "source",
        selection=SELECTION,
        takes_out=tmp_path / "index/takes.json",
        records_dir=tmp_path / "index/takes",
        summary_out=tmp_path / "index/summary.json",
        downscaled=True,
        manifest=tmp_path / "source/manifest.json",
    )
    assert withheld not in {r["take_uid"] for r in lean} and broken in {r["take_uid"] for r in lean}
    summary = json.loads((tmp_path / "index/summary.json").read_text())
    assert summary["left_out"][NOT_IN_RELEASE] == 1
    assert {s["take_uid"]: s["reason"] for s in summary["skipped_takes"]}[withheld] == NOT_IN_RELEASE
    record = json.loads((tmp_path / "index/takes" / f"{broken}.json").read_text())
    with pytest.raises(DownloadError, match=rf"(?s)take '{broken}'.*selection:\n    exclude_takes: \[{broken}\]"):
        download_take(record=record, source=source, source_root=None, out_dir=tmp_path / "raw" / broken)
    # the line the error gives leaves the take out: a counted skip
    build_index(
        source_root=tmp_path / "source",
        selection={**SELECTION, "exclude_takes": [broken]},
        takes_out=tmp_path / "index/takes.json",
        records_dir=tmp_path / "index2/takes",
        summary_out=tmp_path / "index/summary.json",
        downscaled=True,
        manifest=tmp_path / "source/manifest.json",
    )
    assert json.loads((tmp_path / "index/summary.json").read_text())["left_out"][EXCLUDED] == 1


def test_wrong_credentials_fail_with_the_clients_reason(aws_profile, tmp_path):
    with pytest.raises(DownloadError, match="exited with 1"):
        fetch_metadata(out_dir=tmp_path / "source", cfg=egoexo_cfg("no-such-release"), timeout=30)


@pytest.mark.slow
def test_workflow_on_the_egoexo_source(aws_profile, synthetic_source, tmp_path):
    """fetch_metadata -> take_index -> download (the real client) -> extract -> pairs, for one take."""
    takes = [t["take_uid"] for t in json.loads((synthetic_source / "takes.json").read_text())]
    publish(aws_profile, synthetic_source, "workflow", takes, unknown_size={"cam02"})
    from omama.layout import Layout

    L = Layout("results")
    D = L.data("tabletop")
    cfg = tiny_config()
    tabletop = cfg["datasets"]["tabletop"]
    tabletop.pop("synthetic")
    tabletop.update(kind="egoexo", egoexo=egoexo_cfg("workflow"))
    tabletop["selection"]["take_limit"] = 1
    run_snakemake(tmp_path, cfg, D.pairs())
    source = tmp_path / D.source()
    for f in ("takes.json", *(f"annotations/relations_{s}.json" for s in tabletop["selection"]["annotation_splits"])):
        assert (source / f).read_bytes() == (synthetic_source / f).read_bytes(), f
    assert {e["uid"] for e in json.loads((source / "manifest.json").read_text())} == set(takes)
    (take,) = json.loads((tmp_path / D.index()).read_text())
    assert take["videos"]["cam01"] == f"takes/{take['take_name']}/frame_aligned_videos/downscaled/448/cam01.mp4"
    assert take["video_sizes"]["cam01"] > 0 and take["video_sizes"]["cam02"] is None
    a = json.loads((tmp_path / D.annotation(take["take_uid"])).read_text())
    assert a["image_size"] == a["native_size"]  # 448-px part: "auto" keeps the size
    for cam in (take["ego_cam"], *take["exo_cams"]):  # cam02, of unknown size, arrived too
        assert len(list((tmp_path / D.images(take["take_uid"]) / cam).glob("*.jpg"))) == len(take["frames"])
    log = tmp_path / L.log("download", "dataset", "take").format(dataset="tabletop", take=take["take_uid"])
    assert log.read_text().count("egoexo exit 0") == 1
    raw = tmp_path / D.root / "raw"
    assert not raw.exists() or not any(raw.iterdir())  # videos deleted after extraction
