"""Extraction: frames and masks of a take, every bad input named, atomic outputs, memory bounded."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO
from data_fixtures import FRAMES, copy_source, first_mask, index, with_mask_entry

from omama.data import mp4
from omama.data.extract import VideoError, extract_take
from omama.data.masks import MaskDecodeError, decode_rle
from omama.data.pairs import build_pairs
from omama.data.sources import download_take


@pytest.fixture(scope="module")
def records(synthetic_source, tmp_path_factory):
    return index(synthetic_source, tmp_path_factory.mktemp("index"))


def run_extract(record, raw, out: Path, **frames_cfg) -> dict:
    return extract_take(
        record=record,
        raw_root=raw,
        annotation_out=out / "annotation.json",
        images_out=out / "images",
        frames_cfg={**FRAMES, **frames_cfg},
    )


def test_extract_writes_every_camera_and_frame_with_decoded_masks(records, synthetic_source, tmp_path):
    record = records[0]
    a = run_extract(record, synthetic_source, tmp_path)
    cams = [record["ego_cam"], *record["exo_cams"]]
    assert a["subsample_idx"] == record["frames"] and sorted(a["image_size"]) == sorted(cams)
    for cam in cams:
        for frame in record["frames"]:
            img = cv2.imread(str(tmp_path / "images" / cam / f"{frame}.jpg"))
            assert img.shape[:2] == tuple(a["image_size"][cam]) == tuple(a["native_size"][cam])
    obj, cam, frame = first_mask(record)
    entry = record["object_masks"][obj][cam]["annotation"][frame]
    mask = decode_rle(a["masks"][obj][cam][frame])
    assert mask.shape == (entry["height"], entry["width"]) and mask.any()
    assert json.loads((tmp_path / "annotation.json").read_text()) == a
    half = run_extract(record, synthetic_source, tmp_path / "half", ego_scale=0.5, exo_scale=0.25)
    h, w = a["native_size"][record["exo_cams"][0]]
    assert half["image_size"][record["exo_cams"][0]] == [round(h / 4), round(w / 4)]
    assert half["masks"] == a["masks"]


def test_undecodable_mask_names_take_object_camera_frame(records, synthetic_source, tmp_path):
    record = records[0]
    obj, cam, frame = first_mask(record)
    bad = with_mask_entry(record, obj, cam, frame, encodedMask="@@not-lzstring@@")
    with pytest.raises(MaskDecodeError) as e:
        run_extract(bad, synthetic_source, tmp_path)
    for part in (record["take_uid"], obj, cam, frame):
        assert repr(part if part != frame else int(frame)) in str(e.value)
    assert not (tmp_path / "annotation.json").exists() and not (tmp_path / "images").exists()

    a = run_extract(bad, synthetic_source, tmp_path, skip_bad_masks=True)
    assert [(s["object"], s["camera"], s["frame"]) for s in a["skipped"]] == [(obj, cam, int(frame))]
    assert frame not in a["masks"][obj][cam] and int(frame) not in a["annotated_frames"][obj][cam]
    index_path = tmp_path / "takes.json"
    index_path.write_text(json.dumps([{**record, "object_masks": None}]))
    _, summary = build_pairs([str(tmp_path / "annotation.json")], str(index_path))
    assert summary["skipped"]["mask skipped at extraction (listed in annotation.json)"] == 1


def test_mask_size_mismatch_names_the_frame(records, synthetic_source, tmp_path):
    record = records[0]
    obj, cam, frame = first_mask(record, exo=False)
    entry = record["object_masks"][obj][cam]["annotation"][frame]
    bad = with_mask_entry(record, obj, cam, frame, width=entry["width"] + 40)
    with pytest.raises(
        MaskDecodeError,
        match=rf"does not match video size .*take '{record['take_uid']}', object '{obj}', camera '{cam}', frame {int(frame)}",
    ):
        run_extract(bad, synthetic_source, tmp_path)
    a = run_extract(bad, synthetic_source, tmp_path, skip_bad_masks=True)
    assert len(a["skipped"]) == 1 and "does not match video size" in a["skipped"][0]["reason"]


def test_one_bad_mask_size_does_not_reject_the_cameras_good_masks(records, synthetic_source, tmp_path):
    """The camera's first mask declared at half size (same aspect): that mask is skipped, never
    taken as the camera's size, so the camera's good masks after it all survive."""
    record = records[0]
    obj, cam, frame = first_mask(record, exo=False)
    entry = record["object_masks"][obj][cam]["annotation"][frame]
    good = run_extract(record, synthetic_source, tmp_path / "good")
    bad = with_mask_entry(record, obj, cam, frame, height=entry["height"] // 2, width=entry["width"] // 2)
    a = run_extract(bad, synthetic_source, tmp_path / "bad", skip_bad_masks=True)
    assert [(s["object"], s["camera"], s["frame"]) for s in a["skipped"]] == [(obj, cam, int(frame))]
    assert a["native_size"] == good["native_size"]
    n_cam = sum(len(per_cam.get(cam, {})) for per_cam in good["masks"].values())
    assert n_cam >= 5 and sum(len(per_cam.get(cam, {})) for per_cam in a["masks"].values()) == n_cam - 1
    del good["masks"][obj][cam][frame]
    assert a["masks"] == good["masks"]
    with pytest.raises(
        MaskDecodeError,
        match=rf"mask size \[{entry['height'] // 2}, {entry['width'] // 2}\] differs .* "
        rf"object '{obj}', camera '{cam}', frame {int(frame)}$",
    ):
        run_extract(bad, synthetic_source, tmp_path / "strict")


def rewrite_video(src: Path, dest: Path, frames: int | None = None, repeat: int = 1, scale: int = 1) -> None:
    """Re-encode ``src``: only its first ``frames`` frames, or ``repeat`` times over, ``scale`` times larger."""
    cap = cv2.VideoCapture(str(src))
    images = []
    while (frames is None or len(images) < frames) and cap.grab():
        images.append(cap.retrieve()[1])
    cap.release()
    h, w = images[0].shape[:2]
    dest.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(dest) + ".tmp.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 30, (w * scale, h * scale))
    for _ in range(repeat):
        for img in images:
            out.write(cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST) if scale > 1 else img)
    out.release()
    os.replace(str(dest) + ".tmp.mp4", dest)


def test_truncated_video_names_camera_and_missing_frame(records, synthetic_source, tmp_path):
    record = records[0]
    raw = tmp_path / "raw"
    download_take(record=record, source={"kind": "local"}, source_root=synthetic_source, out_dir=raw)
    cam = record["exo_cams"][1]
    last = record["frames"][-1]
    rewrite_video(synthetic_source / record["videos"][cam], raw / record["videos"][cam], frames=last)
    with pytest.raises(
        VideoError, match=rf"ends after {last} frames: missing take '{record['take_uid']}', camera '{cam}', frame {last}"
    ):
        run_extract(record, raw, tmp_path / "out")
    assert not (tmp_path / "out/annotation.json").exists() and not (tmp_path / "out/images").exists()


def faststart(path: Path) -> None:
    """Move an MP4's index (moov) in front of its media data, as ``ffmpeg -movflags +faststart``
    does: the chunk offsets (stco/co64) grow by the index's length."""
    data = path.read_bytes()
    top = mp4.boxes(data)
    starts = [0] + [end for _, _, end in top[:-1]]
    k = next(i for i, b in enumerate(top) if b[0] == "moov")
    moov = bytearray(data[starts[k] : top[k][2]])

    def shift(start: int, end: int) -> None:
        for kind, s, e in mp4.boxes(moov, start, end):
            if kind in mp4.CONTAINERS:
                shift(s, e)
            elif kind in ("stco", "co64"):
                fmt = ">I" if kind == "stco" else ">Q"
                for i in range(struct.unpack_from(">I", moov, s + 4)[0]):
                    at = s + 8 + i * struct.calcsize(fmt)
                    struct.pack_into(fmt, moov, at, struct.unpack_from(fmt, moov, at)[0] + len(moov))

    shift(top[k][1] - starts[k], len(moov))
    assert top[0][0] == "ftyp" and k > 1, [b[0] for b in top]
    rest = b"".join(data[starts[i] : top[i][2]] for i in range(1, len(top)) if i != k)
    path.write_bytes(data[: top[0][2]] + bytes(moov) + rest)


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while cap.grab():
        frames.append(cap.retrieve()[1])
    cap.release()
    return frames


def test_cut_video_with_its_index_in_front_stops_naming_take_camera_frame(records, synthetic_source, tmp_path):
    """An MP4 with its index in front, cut at two thirds: OpenCV decodes the frame whose data is
    cut as a damaged image without an error; extraction must stop and name take, camera, frame."""
    record = records[0]
    raw = tmp_path / "raw"
    download_take(record=record, source={"kind": "local"}, source_root=synthetic_source, out_dir=raw)
    cam = record["exo_cams"][0]
    video = raw / record["videos"][cam]
    original = decode_all(video)
    faststart(video)
    assert [b[0] for b in mp4.top_level(video)][:2] == ["ftyp", "moov"]
    front = decode_all(video)
    assert len(front) == len(original) and all(np.array_equal(a, b) for a, b in zip(front, original))
    assert run_extract(record, raw, tmp_path / "whole") == run_extract(record, synthetic_source, tmp_path / "plain")

    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 2 // 3])
    cut = decode_all(video)  # no exception: the damage shows only in the pixels (and on stderr)
    last = len(cut) - 1
    assert 0 < last < len(original) - 1
    damaged = (np.abs(cut[last].astype(int) - original[last].astype(int)).max(axis=-1) > 40).mean()
    assert damaged > 0.001, damaged  # decoded pixel-identical when whole (above)
    record = {**record, "frames": sorted({f for f in record["frames"] if f < last} | {last})}
    with pytest.raises(
        VideoError, match=rf"is truncated: .*take '{record['take_uid']}', camera '{cam}', frame {last} and after"
    ):
        run_extract(record, raw, tmp_path / "out")
    assert not (tmp_path / "out/annotation.json").exists() and not (tmp_path / "out/images").exists()


def test_malformed_json_is_named(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    rel = src / "annotations/relations_train.json"
    text = rel.read_text()
    first = next(iter(json.loads(text)["annotations"]))
    rel.write_text(text[: len(text) * 2 // 3])
    with pytest.raises(ValueError, match=rf"malformed relations file .*relations_train.json \(after take '{first}'\)"):
        index(src, tmp_path / "out")

    rel.write_text(text)
    ann = json.loads(text)
    obj = sorted(ann["annotations"][first]["object_masks"])[0]
    ann["annotations"][first]["object_masks"][obj]["cam01"]["annotated_frames"].append("later")
    rel.write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=rf"malformed frame key 'later' for take '{first}', object '{obj}', camera 'cam01'"):
        index(src, tmp_path / "out2")


def test_empty_takes_and_scenario_filter_are_counted(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    rel = src / "annotations/relations_train.json"
    ann = json.loads(rel.read_text())
    already = sorted(u for u, a in ann["annotations"].items() if not a["object_masks"])  # synthetic.empty_takes
    empty = sorted(u for u in ann["annotations"] if u not in already)[0]
    ann["annotations"][empty]["object_masks"] = {}
    rel.write_text(json.dumps(ann))
    records = index(src, tmp_path / "out")
    summary = json.loads((tmp_path / "out/index/summary.json").read_text())
    assert empty not in [r["take_uid"] for r in records]
    assert summary["left_out"] == {"empty object_masks": 1 + len(already)}
    assert sorted(t["take_uid"] for t in summary["skipped_takes"]) == sorted([empty, *already])
    scenario = records[0]["scenario"]
    only = index(src, tmp_path / "sc", scenarios=[scenario.upper()])
    assert {r["scenario"] for r in only} == {scenario}
    assert index(src, tmp_path / "parent", scenarios=["Health"]) == records
    assert len(index(src, tmp_path / "limit", take_limit=1)) == 1
    fewer = index(src, tmp_path / "frac", frame_fraction=0.5)
    assert all(set(r["frames"]) < set(full["frames"]) for r, full in zip(fewer, records))
    assert fewer == index(src, tmp_path / "frac2", frame_fraction=0.5)


def long_take(record, source: Path, dest: Path, repeat: int) -> tuple[dict, Path]:
    """The take with 4x larger videos (masks keep their size: same aspect) repeated ``repeat`` times."""
    for rel in record["videos"].values():
        rewrite_video(source / rel, dest / rel, repeat=repeat, scale=4)
    n = int(cv2.VideoCapture(str(dest / record["videos"][record["ego_cam"]])).get(cv2.CAP_PROP_FRAME_COUNT))
    return {**record, "frames": sorted({*record["frames"], n - 1})}, dest


EXTRACT = """
import json, resource, sys
from omama.data.extract import extract_take
record, raw, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
extract_take(record=record, raw_root=raw, annotation_out=out + "/annotation.json", images_out=out + "/images",
             frames_cfg=json.loads(sys.argv[4]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def extract_process(record: dict, raw: Path, out: Path, tmp: Path) -> subprocess.Popen:
    rec = tmp / f"record-{out.name}.json"
    rec.write_text(json.dumps(record))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", EXTRACT, str(rec), str(raw), str(out), json.dumps(FRAMES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_peak_memory_does_not_grow_with_take_length(records, synthetic_source, tmp_path):
    rss = {}
    for repeat in (1, 4):
        record, raw = long_take(records[0], synthetic_source, tmp_path / f"raw{repeat}", repeat)
        proc = extract_process(record, raw, tmp_path / f"out{repeat}", tmp_path)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        rss[repeat] = int(out.split()[-1]) / 1024  # MiB
    frame_mib = sum(np.prod(cv2.imread(str(p)).shape) for p in (tmp_path / "out4/images").glob("*/0.jpg")) / 2**20
    held = 3 * 90 * frame_mib  # what keeping the 3 extra seconds of all cameras in memory would cost
    assert held > 50
    print(f"peak RSS MiB: short {rss[1]:.1f}, 4x longer {rss[4]:.1f}; holding the extra frames would add {held:.0f}")
    assert rss[4] - rss[1] < 0.2 * held, (rss, held)


def test_killed_extraction_leaves_nothing_that_looks_finished(records, synthetic_source, tmp_path):
    record, raw = long_take(records[0], synthetic_source, tmp_path / "raw", 4)
    record = {**record, "frames": list(range(0, 360, 3))}
    expected = run_extract(record, raw, tmp_path / "clean")
    out = tmp_path / "killed"
    proc = extract_process(record, raw, out, tmp_path)
    deadline = time.time() + 120
    while not any(out.glob(".tmp-images-*/images/*/*.jpg")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "extraction finished before it could be killed"
    assert any(out.glob(".tmp-images-*/images/*/*.jpg"))
    assert not (out / "annotation.json").exists() and not (out / "images").exists()

    assert run_extract(record, raw, out) == expected
    assert sorted(p.name for p in out.iterdir()) == ["annotation.json", "images"]  # the killed run's leftovers are gone
    assert (out / "annotation.json").read_bytes() == (tmp_path / "clean/annotation.json").read_bytes()
    jpgs = sorted(p.relative_to(out / "images") for p in (out / "images").rglob("*.jpg"))
    assert jpgs == sorted(p.relative_to(tmp_path / "clean/images") for p in (tmp_path / "clean/images").rglob("*.jpg"))
    assert all((out / "images" / p).read_bytes() == (tmp_path / "clean/images" / p).read_bytes() for p in jpgs)


def test_extract_keeps_a_live_concurrent_writers_temporary(records, synthetic_source, tmp_path):
    """Issue 10 defect 2 in extract_take: only temporaries of writers that died on this host go."""
    import socket
    import subprocess

    live, dead = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    try:
        running = tmp_path / f".tmp-images-{host}-{live.pid}-abcd1234" / "images" / "cam01"
        killed = tmp_path / f".tmp-images-{host}-{dead.pid}-abcd1234" / "images" / "cam01"
        for d in (running, killed):
            d.mkdir(parents=True)
            (d / "0.jpg").write_bytes(b"partial")
        run_extract(records[0], synthetic_source, tmp_path)
        assert (running / "0.jpg").read_bytes() == b"partial" and not killed.parent.parent.exists()
        assert (tmp_path / "images").is_dir() and (tmp_path / "annotation.json").is_file()
    finally:
        live.kill()
        live.wait()
