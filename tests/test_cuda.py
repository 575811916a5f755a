"""The CUDA paths agree with the CPU: features under bf16 autocast, stores written on the GPU, the
head's scores and one training step. Skipped without a CUDA device (CI has none); run on a GPU
machine with `pytest tests/test_cuda.py` (benchmarks/gpu_check.sh's machine is enough)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omama.backbones import load_backbone
from omama.features import FeatureStore, extract_features
from omama.model import MatchingHead, matching_loss, score_candidates
from tests.test_features import CFG, EGO, EXO, rgb, write_take

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MOBILENET = {
    "kind": "torchvision",
    "architecture": "mobilenet_v2",
    "weights": "untrained",
    "stride": 16,
    "ego_grid": [3, 3],
    "exo_grid": [2, 4],
    "batch_size": 2,
    "dtype": "float16",
}
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


def test_head_scores_and_one_training_step_agree_with_cpu():
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
        opt = torch.optim.AdamW(h.parameters(), lr=1e-3)
        args = [t.to(device) for t in (src, dst, src_masks, cand)]
        scores = score_candidates(h, *args)
        loss = matching_loss(scores, target.to(device), visible.to(device))
        loss.backward()
        opt.step()
        after = score_candidates(h, *args)
        results[device] = [t.detach().cpu() for t in (scores, loss, after)]
    for name, a, b in zip(("scores", "loss", "scores after one step"), results["cpu"], results["cuda"]):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3, msg=lambda m, n=name: f"{n}: {m}")
