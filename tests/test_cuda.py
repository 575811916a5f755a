"""The CUDA paths agree with the CPU: features under bf16 autocast, stores written on the GPU, the
head's scores and one training step. Skipped without a CUDA device (CI has none); run on a GPU
machine with `pytest tests/test_cuda.py` (benchmarks/gpu_check.sh's machine is enough)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omama.features.backbones import load_backbone
from omama.features.store import FeatureStore, extract_features
from omama.model.head import MatchingHead, matching_loss, score_candidates
from tests.test_features import CFG, EGO, EXO, rgb, write_take
from tests.test_weights import PRETRAINED

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MOBILENET = {**PRETRAINED, "weights": "untrained"}  # weights do not matter here; no download
BACKBONES = pytest.mark.parametrize("cfg", [CFG, MOBILENET], ids=["tiny-dinov2", "mobilenet_v2"])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the channel vectors at each (frame, y, x) of two (B, C, h, w) arrays."""
    num = (a * b).sum(1)
    return num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


@BACKBONES
def test_cuda_features_agree_with_cpu(tmp_path, cfg):
    take = write_take(tmp_path / "frames", frames=(0, 30, 60))
    ims = [rgb(take / "images" / EGO / f"{f}.jpg") for f in (0, 30, 60)]
    cpu = load_backbone({**cfg, "device": "cpu"}).features(ims, "ego").numpy()
    gpu = load_backbone({**cfg, "device": "cuda"}).features(ims, "ego").cpu().numpy()
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    sim = cosine(cpu, gpu)
    assert sim.min() > 0.99, f"bf16 autocast features drift from the float32 CPU ones: min cosine {sim.min():.4f}"


@BACKBONES
def test_store_written_on_cuda_reads_back_as_computed(tmp_path, cfg):
    take = write_take(tmp_path / "frames", frames=(0, 30, 60))
    out = tmp_path / "features" / "take-1.zarr"
    gpu_cfg = {**cfg, "device": "cuda"}
    extract_features(annotation_json=take / "annotation.json", images_dir=take / "images", out_store=out, backbone_cfg=gpu_cfg)
    store = FeatureStore(out)
    assert store.attrs["backbone"]["autocast"] == "bfloat16" and store.attrs["backbone"]["device"].startswith("cuda")
    bb = load_backbone(gpu_cfg)
    for cam, view in [(EGO, "ego"), (EXO[0], "exo")]:
        ims = [rgb(take / "images" / cam / f"{f}.jpg") for f in (0, 30, 60)]
        direct = bb.features(ims, view).cpu().numpy()
        np.testing.assert_allclose(store.read_many(cam, [0, 30, 60]), direct, rtol=1e-2, atol=1e-2)  # fp16, batching


@pytest.fixture
def no_tf32():
    """float32 arithmetic on the GPU: cuDNN convolutions default to TF32 (10-bit mantissa)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_head_scores_loss_and_gradients_agree_with_cpu(no_tf32):
    """Forward and backward of the matching head on the GPU against the CPU, both in float32.
    Gradients, not an optimiser step: AdamW's first step is lr * sign(grad), so a near-zero gradient
    that differs in its last bits would flip a whole update."""
    torch.manual_seed(0)
    B, N, C = 4, 8, 96
    src_grid, dst_grid = (3, 5), (4, 4)
    head = MatchingHead(src_grid=src_grid, dst_grid=dst_grid, in_channels=C)
    gen = torch.Generator().manual_seed(1)
    src = torch.randn(B, C, *src_grid, generator=gen)
    dst = torch.randn(B, C, *dst_grid, generator=gen)
    src_masks = (torch.rand(B, 1, 42, 70, generator=gen) > 0.7).float()
    cand = (torch.rand(B, N, 56, 56, generator=gen) > 0.7).float()
    target, visible = torch.zeros(B, dtype=torch.long), torch.tensor([1.0, 1.0, 0.0, 1.0])

    results = {}
    for device in ("cpu", "cuda"):
        h = MatchingHead(src_grid=src_grid, dst_grid=dst_grid, in_channels=C).to(device)
        h.load_state_dict(head.state_dict())
        scores = score_candidates(h, *(t.to(device) for t in (src, dst, src_masks, cand)))
        loss = matching_loss(scores, target.to(device), visible.to(device))
        loss.backward()
        grads = {n: p.grad.detach().cpu() for n, p in h.named_parameters() if p.grad is not None}
        results[device] = (scores.detach().cpu(), loss.detach().cpu(), grads)
    (s_cpu, l_cpu, g_cpu), (s_gpu, l_gpu, g_gpu) = results["cpu"], results["cuda"]
    torch.testing.assert_close(s_gpu, s_cpu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(l_gpu, l_cpu, rtol=1e-4, atol=1e-5)
    assert g_gpu.keys() == g_cpu.keys() and len(g_cpu) > 10
    # each gradient's largest difference, relative to that tensor's largest entry
    errs = {n: float((g_gpu[n] - g).abs().max() / g.abs().max().clamp_min(1e-6)) for n, g in g_cpu.items()}
    assert not {n: e for n, e in errs.items() if e > 1e-3}, f"gradients differ on the GPU: {errs}"
