"""Backbones load from local weights the way they would from the hub, and give the right grids."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from omama.features.backbones import load_backbone

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "seed": 0}
GRIDS = {"ego_grid": [4, 4], "exo_grid": [3, 5]}


def frames(n: int, h: int = 40, w: int = 56, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def patch_tokens(model, x: torch.Tensor, prefix: int, patch: int) -> torch.Tensor:
    """Reference: last_hidden_state without CLS/registers, as (B, C, h, w)."""
    with torch.no_grad():
        tokens = model(pixel_values=x).last_hidden_state[:, prefix:]
    h, w = x.shape[2] // patch, x.shape[3] // patch
    return tokens.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("registers", [0, 4])
def test_dinov2_from_local_directory(tmp_path, registers):
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    arch = {k: TINY[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    torch.manual_seed(1)
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**arch, patch_size=14, num_register_tokens=registers))
    else:
        model = Dinov2Model(Dinov2Config(**arch, patch_size=14))
    model.save_pretrained(tmp_path / "dinov2")
    bb = load_backbone({"kind": "dinov2", "weights": str(tmp_path / "dinov2"), **GRIDS})
    assert bb.input_size("ego") == (56, 56) and bb.input_size("exo") == (42, 70)
    assert bb.channels == 32 and bb.patch_size == 14
    ims = frames(2)
    feats = bb.features(ims, "exo")
    assert feats.shape == (2, 32, 3, 5) and feats.dtype == torch.float32 and not feats.requires_grad
    ref = patch_tokens(model.eval(), bb.prepare(ims, "exo"), 1 + registers, 14)
    torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-4)
    d = bb.describe()
    assert d["untrained"] is False and d["prefix_tokens_dropped"] == 1 + registers
    assert d["implementation"] == "transformers" and d["attn_implementation"] == "sdpa"


def test_dinov3_from_local_directory(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    arch = {k: TINY[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    torch.manual_seed(2)
    model = DINOv3ViTModel(DINOv3ViTConfig(**arch, patch_size=16, num_register_tokens=4))
    model.save_pretrained(tmp_path / "dinov3")
    bb = load_backbone({"kind": "dinov3", "weights": str(tmp_path / "dinov3"), **GRIDS})
    assert bb.patch_size == 16 and bb.input_size("exo") == (48, 80)
    ims = frames(1)
    ref = patch_tokens(model.eval(), bb.prepare(ims, "ego"), 5, 16)
    torch.testing.assert_close(bb.features(ims, "ego"), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="dinov2"):
        load_backbone({"kind": "dinov2", "weights": str(tmp_path / "dinov3"), **GRIDS})


def test_untrained_is_seeded_and_says_so():
    cfg = {"kind": "dinov2", "weights": "untrained", "tiny": TINY, **GRIDS}
    state = torch.random.get_rng_state()
    a, b = load_backbone(cfg), load_backbone(cfg)
    assert torch.equal(torch.random.get_rng_state(), state), "building a backbone must not move the global RNG"
    other = load_backbone({**cfg, "tiny": {**TINY, "seed": 1}})
    ims = frames(2, 30, 30)
    fa = a.features(ims, "ego")
    assert torch.equal(fa, b.features(ims, "ego"))
    assert not torch.allclose(fa, other.features(ims, "ego"))
    d = a.describe()
    assert d["untrained"] is True and d["tiny"]["seed"] == 0 and d["architecture"] == "Dinov2WithRegistersModel"
    assert d["input_size"] == {"ego": [56, 56], "exo": [42, 70]}


def test_resnet50_dino_from_state_dict_file(tmp_path):
    import torchvision

    torch.manual_seed(3)
    resnet = torchvision.models.resnet50(weights=None)
    state = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    torch.save(state, tmp_path / "dino_resnet50.pth")
    bb = load_backbone({"kind": "resnet50-dino", "weights": str(tmp_path / "dino_resnet50.pth"), **GRIDS})
    # stride-32 map of about half the grid, pooled up to the grid (review: 25x25 -> 50x50)
    assert bb.input_size("exo") == (math.ceil(3 / 2) * 32, math.ceil(5 / 2) * 32) == (64, 96)
    assert bb.channels == 2048 and bb.describe()["implementation"] == "torchvision"
    ims = frames(1)
    x = bb.prepare(ims, "exo")
    with torch.no_grad():
        r = resnet.eval()
        y = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    ref = torch.nn.functional.adaptive_avg_pool2d(y, (3, 5))
    torch.testing.assert_close(bb.features(ims, "exo"), ref, rtol=1e-4, atol=1e-4)
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a ResNet-50"):
        load_backbone({"kind": "resnet50-dino", "weights": str(tmp_path / "bad.pth"), **GRIDS})


def test_torchhub_local_repository(tmp_path):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "hubconf.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn
        dependencies = ["torch"]

        class TinyViT(nn.Module):
            patch_size = 14
            embed_dim = 8

            def __init__(self):
                super().__init__()
                self.patch = nn.Conv2d(3, 8, 14, 14)
                self.norm = nn.LayerNorm(8)

            def forward_features(self, x):
                t = self.patch(x).flatten(2).transpose(1, 2)
                return {"x_norm_clstoken": t.mean(1), "x_norm_patchtokens": self.norm(t)}

        def tiny_vit14():
            torch.manual_seed(0)
            return TinyViT()
    """)
    )
    cfg = {"kind": "dinov2", "implementation": "torchhub", "hub_repo": str(tmp_path / "hub"), "weights": "tiny_vit14", **GRIDS}
    bb = load_backbone(cfg)
    ims = frames(2)
    x = bb.prepare(ims, "exo")
    with torch.no_grad():
        ref = bb.network.model.norm(bb.network.model.patch(x).flatten(2).transpose(1, 2))
    ref = ref.transpose(1, 2).reshape(2, 8, 3, 5)
    torch.testing.assert_close(bb.features(ims, "exo"), ref)
    assert bb.describe()["implementation"] == "torchhub" and bb.describe()["hub_source"] == "local"


def test_bad_config_and_view_are_named():
    cfg = {"kind": "dinov2", "weights": "untrained", "tiny": TINY, **GRIDS}
    with pytest.raises(ValueError, match="view"):
        load_backbone(cfg).features(frames(1), "top")
    with pytest.raises(ValueError, match=r"at backbones entry\.implementation: 'torchhub' is not one of \['transformers'\]"):
        load_backbone({**cfg, "kind": "dinov3", "implementation": "torchhub"})
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        load_backbone({**cfg, "weights": "/no-such-dir"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        load_backbone({"kind": "dinov2", "weights": "untrained", "tiny": TINY, **GRIDS}, device="cuda")


def published_reshape(img: np.ndarray, patch: int) -> np.ndarray:
    """The published O-MaMa frame preprocessing, from its description: nearest neighbour to
    (patch * (H // patch), patch * (W // patch)), and only when the height is not already a multiple."""
    import cv2

    h, w = img.shape[:2]
    if h % patch != 0:
        img = cv2.resize(img, (patch * (w // patch), patch * (h // patch)), interpolation=cv2.INTER_NEAREST)
    return img


@pytest.mark.parametrize(
    "kind, patch, grids, sizes",
    [
        ("dinov2", 14, {"ego_grid": [50, 50], "exo_grid": [38, 68]}, {"ego": (704, 704), "exo": (540, 960)}),
        ("dinov3", 16, {"ego_grid": [5, 5], "exo_grid": [3, 6]}, {"ego": (95, 87), "exo": (60, 111)}),
    ],
)
def test_nearest_resize_reproduces_the_published_inputs(kind, patch, grids, sizes):
    """Processed Ego-Exo4D frames (704x704 ego, 540x960 exo) become exactly the published 700x700 /
    532x952 inputs; frames already at the input size are passed through untouched."""
    bb = load_backbone({"kind": kind, "weights": "untrained", "tiny": TINY, "resize": "nearest", **grids})
    assert bb.patch_size == patch and bb.describe()["resize"] == "nearest"
    for view, (h, w) in sizes.items():
        im = frames(1, h, w, seed=h)[0]
        want = published_reshape(im, patch)
        assert want.shape[:2] == bb.input_size(view)
        np.testing.assert_array_equal(bb.resize(im, view), want)
        assert bb.resize(want, view) is want  # already the right size: untouched


def test_bilinear_resize_is_the_default_and_differs_from_nearest():
    import cv2

    cfg = {"kind": "dinov2", "weights": "untrained", "tiny": TINY, **GRIDS}
    bilinear, nearest = load_backbone(cfg), load_backbone({**cfg, "resize": "nearest"})
    assert bilinear.describe()["resize"] == "bilinear"
    im = frames(1, 45, 75)[0]
    np.testing.assert_array_equal(bilinear.resize(im, "exo"), cv2.resize(im, (70, 42), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(nearest.resize(im, "exo"), cv2.resize(im, (70, 42), interpolation=cv2.INTER_NEAREST))
    assert not np.array_equal(bilinear.resize(im, "exo"), nearest.resize(im, "exo"))
    assert not torch.equal(bilinear.features([im], "exo"), nearest.features([im], "exo"))
    same = frames(1, 42, 70)[0]
    torch.testing.assert_close(bilinear.features([same], "exo"), nearest.features([same], "exo"), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"at backbones entry\.resize: 'bicubic' is not one of"):
        load_backbone({**cfg, "resize": "bicubic"})
