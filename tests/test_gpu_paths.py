"""The GPU paths of issue 23 and their CPU fallbacks: frames decoded on the device (the OpenCV path on the CPU, the same
features), the faster network settings (ignored on the CPU), the feature cache for training (the same batches and
byte-identical weights as the stores' reader), the untrained FastSAM-x, and the official split scaled by one setting.
The CUDA comparisons at the end are skipped without a GPU (as tests/test_cuda.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import run_snakemake

from omama.config import ConfigError, entry, validate
from omama.experiment import Experiment, Inputs
from omama.features.backbones import load_backbone
from omama.features.store import FeatureStore, extract_features
from omama.io import FrameError, load_frame, read_frame_bytes, read_json
from omama.layout import Layout

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0}
BACKBONE = {"kind": "dinov2", "weights": "untrained", "tiny": TINY, "ego_grid": [4, 4], "exo_grid": [3, 5], "batch_size": 2}
EGO, EXO = "aria01_214-1", "cam01"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def write_frames(root: Path, sizes: dict, frames=(0, 30, 60)) -> Path:
    """A take in the per-take layout: annotation.json and smooth random JPEGs per camera (``sizes``: cam -> (h, w))."""
    rng = np.random.default_rng(1)
    for cam, (h, w) in sizes.items():
        (root / "images" / cam).mkdir(parents=True, exist_ok=True)
        for f in frames:
            image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
            cv2.imwrite(str(root / "images" / cam / f"{f}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cams = list(sizes)
    annotation = {"take_uid": root.name, "ego_cam": cams[0], "exo_cams": cams[1:], "subsample_idx": list(frames), "masks": {}}
    (root / "annotation.json").write_text(json.dumps(annotation))
    return root


def extract(take: Path, out: Path, cfg: dict) -> FeatureStore:
    extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=cfg)
    return FeatureStore(out)


# -- JPEGs decoded on the device


def test_device_decode_on_a_cpu_backbone_takes_the_opencv_path_with_the_same_features(tmp_path):
    take = write_frames(tmp_path / "take", {EGO: (60, 60), EXO: (45, 80)})
    plain = extract(take, tmp_path / "cpu.zarr", BACKBONE)
    asked = extract(take, tmp_path / "device.zarr", {**BACKBONE, "decode": "device"})
    assert plain.attrs["decode"] == asked.attrs["decode"] == "opencv"  # the fallback, recorded
    for cam in (EGO, EXO):
        assert np.array_equal(plain.read_many(cam, [0, 30, 60]), asked.read_many(cam, [0, 30, 60]))


@pytest.mark.parametrize("resize", ["nearest", "bilinear"])
def test_jpegs_decoded_as_tensors_give_the_opencv_input(tmp_path, resize):
    """The device path's decoding and resizing, run on the CPU (torchvision's decoder): nearest picks OpenCV's pixels,
    bilinear is within one grey level; a frame already at the input size is used as decoded."""
    bb = load_backbone({**BACKBONE, "ego_grid": [50, 50], "exo_grid": [38, 68], "resize": resize})
    take = write_frames(tmp_path / "take", {EGO: (448, 448), EXO: (448, 796), "cam02": (532, 952)}, frames=(0,))
    grey = 255 * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)  # one grey level in normalised units
    for cam, view in ((EGO, "ego"), (EXO, "exo"), ("cam02", "exo")):
        path = take / "images" / cam / "0.jpg"
        opencv = bb.prepare([load_frame(path, "t", cam, 0)], view)
        tensors = bb.prepare_jpegs([read_frame_bytes(path, "t", cam, 0)], view)
        assert tensors.shape == opencv.shape == (1, 3, *bb.input_size(view))
        levels = ((tensors - opencv).abs() / grey).max().item()
        assert levels < 1e-4 if resize == "nearest" or cam == "cam02" else levels <= 1.0001, (cam, levels)


def test_read_frame_bytes_refuses_missing_and_truncated_jpegs_naming_the_frame(tmp_path):
    take = write_frames(tmp_path / "take", {EGO: (32, 32)}, frames=(0,))
    path = take / "images" / EGO / "0.jpg"
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(FrameError, match=r"truncated JPEG.*|camera 'aria01_214-1', frame 0"):
        read_frame_bytes(path, "t", EGO, 0)
    with pytest.raises(FrameError, match="frame 30"):
        read_frame_bytes(take / "images" / EGO / "30.jpg", "t", EGO, 30)


def test_backbone_decode_and_network_settings_are_checked_by_the_schema():
    with pytest.raises(ConfigError, match=r"decode.*'gpu' is not one of"):
        entry("backbones", {**BACKBONE, "decode": "gpu"})
    with pytest.raises(ConfigError, match=r"compile"):
        entry("backbones", {**BACKBONE, "compile": "fast"})


def test_compile_and_channels_last_leave_the_cpu_path_as_it_was(tmp_path):
    take = write_frames(tmp_path / "take", {EGO: (60, 60), EXO: (45, 80)})
    plain = load_backbone(BACKBONE)
    fast = load_backbone({**BACKBONE, "compile": "reduce-overhead", "channels_last": True})
    assert (fast.describe()["compile"], fast.describe()["channels_last"]) == ("none", False)
    images = [load_frame(take / "images" / EGO / f"{f}.jpg", "t", EGO, f) for f in (0, 30)]
    assert torch.equal(plain.features(images, "ego"), fast.features(images, "ego"))


# -- the feature cache for training


TOY = {
    "results": "results",
    "datasets": {
        "toy": {
            "kind": "synthetic",
            "synthetic": {"takes": 3, "seconds": 2, "ego_size": 64, "exo_size": [48, 84], "objects": 3, "empty_takes": 0},
            "selection": {"annotation_splits": ["train", "val"]},
        }
    },
    "backbones": {"tiny": {**BACKBONE, "dtype": "int8"}},
    "proposers": {"classical": {"kind": "classical"}},
    "experiments": {
        "toy-frame": {
            "dataset": "toy",
            "backbone": "tiny",
            "proposer": "classical",
            "split": "frame",
            "train": {"epochs": 2, "batch_size": 4, "negatives": 7, "seed": 3, "feature_cache": 0.5},
        }
    },
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny run of the real workflow up to the trained head (int8 stores: dequantised from the cache too)."""
    workdir = tmp_path_factory.mktemp("toy")
    run_snakemake(workdir, TOY, str(Layout("results").model("toy-frame")))
    config = validate(copy.deepcopy(TOY))
    layout = Layout(str(workdir / "results"))
    takes = [t["take_uid"] for t in read_json(layout.data("toy").index(), "take index")]
    x = Experiment.resolve(config, "toy-frame")
    return {"workdir": workdir, "experiment": x, "inputs": Inputs.from_layout(layout, x, "toy", takes, stage="train")}


def with_cache(x: Experiment, share: float) -> Experiment:
    return dataclasses.replace(x, train={**x.train, "feature_cache": share})


def test_cached_batches_are_the_batches_read_from_the_stores(toy):
    from omama.model.batches import TrainingSet, batch_features, epoch_batches, feature_cache, training_loader
    from omama.model.setup import setup
    from omama.model.takedata import subset_rows

    x, s = toy["experiment"], setup(toy["experiment"], toy["inputs"])
    rows = subset_rows(toy["inputs"].split, "train", direction=x.direction)
    cache = feature_cache(rows, s.corpus, x.direction, s.device, 1.0)
    assert cache is not None and feature_cache(rows, s.corpus, x.direction, s.device, 1e-12) is None  # too small a share
    assert feature_cache(rows, s.corpus, x.direction, s.device, 0) is None
    sets = [
        TrainingSet(rows, s.corpus, s.geometry, negatives=7, seed=3, stored=True, direction=x.direction, cached=c)
        for c in (None, cache.index)
    ]
    batches = epoch_batches(rows, 4, 3, 1, "shuffled")
    read, cached = (list(training_loader(d, batches, w, s.device)) for d, w in zip(sets, (0, 2)))  # workers: 0 and 2
    assert len(read) == len(cached) == len(batches) > 1
    for a, b in zip(read, cached):
        assert "src_feat" in a and "src_dequant" in a and "src_rows" in b and "src_feat" not in b  # int8: dequantised
        for feature_a, feature_b in zip(batch_features(a, device=s.device), batch_features(b, device=s.device, cache=cache)):
            assert feature_a.dtype == torch.float32 and torch.equal(feature_a, feature_b)
        assert all(torch.equal(a[k], b[k]) for k in ("src_mask", "cand_masks", "valid", "target", "visible"))


def test_training_from_the_cache_gives_byte_identical_weights(toy, tmp_path, caplog):
    from omama.model.train import train_experiment

    caplog.set_level(logging.INFO, logger="omama.model.batches")
    states, histories = {}, {}
    for share in (0.0, 1.0):
        out = tmp_path / f"share-{share}"
        histories[share] = train_experiment(
            with_cache(toy["experiment"], share),
            toy["inputs"],
            model_out=out / "model.pt",
            history_out=out / "history.json",
            checkpoint_dir=out / "checkpoints",
        )
        states[share] = torch.load(out / "model.pt", weights_only=True)
    assert "no feature cache" in caplog.text and "feature cache: " in caplog.text
    a, b = states[0.0], states[1.0]
    assert a.keys() == b.keys() and all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
    assert [h["train_loss"] for h in histories[0.0]] == [h["train_loss"] for h in histories[1.0]]
    assert all(h["steps"] > 1 and 0 <= h["loader_wait_seconds"] <= h["train_seconds"] for h in histories[1.0])
    # the workflow's own job (cache share 0.5 of this machine's memory) trained the same weights
    workflow = torch.load(toy["workdir"] / Layout("results").model("toy-frame"), weights_only=True)
    assert all(torch.equal(workflow[k], a[k]) for k in a)


def test_feature_cache_share_is_checked_by_the_schema():
    with pytest.raises(ConfigError, match=r"train entry.*feature_cache"):
        entry("train", {"feature_cache": 1.5})


# -- the untrained FastSAM-x and the scaled official split


def test_untrained_fastsam_is_built_offline_once_and_proposes_masks(tmp_path, monkeypatch):
    from omama.proposals.proposers import make_proposer
    from omama.registry import PROPOSERS
    from omama.weights import WeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = entry("proposers", {"kind": "fastsam", "weights": "untrained", "imgsz": 64, "conf": 0.0})
    kind = PROPOSERS.get("fastsam")
    assert kind.fetches(cfg) and not kind.problems("p", cfg)
    with pytest.raises(WeightsError, match="proposer_weights stage"):
        make_proposer(cfg)
    record = kind.fetch(cfg, timeout=1)
    assert record["source"] == "built" and record["architecture"].startswith("yolov8x-seg.yaml")
    again = kind.fetch(cfg, timeout=1)
    assert again["source"] == "cache" and again["sha256"] == record["sha256"]
    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2)
    masks, scores = make_proposer(cfg)(image)
    assert masks.dtype == bool and masks.shape[1:] == (48, 64) and len(masks) == len(scores) > 0
    assert np.allclose(scores, scores[0], rtol=0.1) and scores.max() < 0.01  # untrained: every box scored alike


def test_official_scale_writes_the_official_split_scaled(tmp_path):
    from omama.synthetic.dataset import OFFICIAL_TAKES, generate_dataset, split_counts

    base = entry("datasets", {"kind": "synthetic"})["synthetic"]
    assert split_counts({**base, "official_scale": 1.0}) == (1317, 201, 295)
    assert split_counts({**base, "official_scale": 0.02}) == (26, 4, 6)
    assert split_counts(base) == (base["takes"], 2, 0)  # null: takes and the fractions, as before
    cfg = {**base, "official_scale": 0.001, "seconds": 1, "ego_size": 32, "exo_size": [18, 32], "empty_takes": 0}
    generate_dataset(tmp_path / "src", cfg)
    counts = {
        s: len(read_json(tmp_path / "src" / f"annotations/relations_{s}.json", "")["annotations"]) for s in OFFICIAL_TAKES
    }
    assert counts == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ConfigError, match=r"official_scale"):
        entry("datasets", {"kind": "synthetic", "synthetic": {"official_scale": 0}})


# -- on a GPU (skipped here)


@needs_cuda
def test_cuda_decode_gives_the_cpu_decode_features_within_the_cuda_tolerance(tmp_path):
    """nvJPEG against OpenCV, both on the GPU network: the tolerance tests/test_cuda.py uses for stores written on CUDA."""
    take = write_frames(tmp_path / "take", {EGO: (448, 448), EXO: (448, 796)}, frames=(0, 30, 60, 90))
    cfg = {**BACKBONE, "ego_grid": [50, 50], "exo_grid": [38, 68], "resize": "nearest", "device": "cuda", "batch_size": 3}
    cpu = extract(take, tmp_path / "cpu.zarr", cfg)
    device = extract(take, tmp_path / "device.zarr", {**cfg, "decode": "device"})
    assert cpu.attrs["decode"] == "opencv" and device.attrs["decode"].startswith("torchvision.io.decode_jpeg on cuda")
    assert "decode_fallback_batches" not in device.attrs
    for cam in (EGO, EXO):
        a, b = cpu.read_many(cam, [0, 30, 60, 90]), device.read_many(cam, [0, 30, 60, 90])
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-2)


@needs_cuda
def test_cuda_feature_cache_trains_the_weights_of_the_reader(toy, tmp_path):
    """On the GPU the cache sits in device memory; the weights equal the reader's (same batches, same kernels)."""
    from omama.model.train import train_experiment

    states = {}
    for share in (0.0, 1.0):
        x = dataclasses.replace(toy["experiment"], backbone={**toy["experiment"].backbone, "device": "cuda"})
        out = tmp_path / f"share-{share}"
        train_experiment(
            with_cache(x, share), toy["inputs"], model_out=out / "m.pt", history_out=out / "h.json", checkpoint_dir=out / "c"
        )
        states[share] = torch.load(out / "m.pt", weights_only=True)
    assert all(torch.equal(states[0.0][k], states[1.0][k]) for k in states[0.0])
