"""Training-iteration cost: features on the fly vs pre-extracted; vectorised pooling vs a per-mask loop.

One run, ratios within the run. The on-the-fly backbone is a DINOv2-with-registers
architecture with untrained (seeded) weights, base size by default (768 wide, 12 layers);
its grids default to the shipped config's 16x16 (ego) / 12x21 (exo) because the official
50x50 / 38x68 takes minutes per iteration on a 2-core CPU (pass --ego-grid 50 50
--exo-grid 38 68 on a bigger machine). The pooling comparison uses the official geometry
(700x700 ego input, 50x50 grid, 768 channels).

    PYTHONPATH=. python benchmarks/train_iteration.py [--arch base|tiny] [--repeats 3] [--threads 2]
    PYTHONPATH=. python benchmarks/train_iteration.py --smoke     # tiny sizes: checks that it runs
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from omama.data.masks import mask_box, resize_mask
from omama.features.backbones import load_backbone
from omama.model.descriptors import describe
from omama.model.head import MatchingHead, matching_loss, score_candidates

ARCHS = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "seed": 0},
    "tiny": {"hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 192, "seed": 0},
}


def random_masks(rng, b, n, H, W) -> torch.Tensor:
    yy, xx = np.mgrid[:H, :W]
    out = np.zeros((b, n, H, W), bool)
    for i in range(b):
        for j in range(n):
            cy, cx, ry, rx = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(8, H / 4), rng.uniform(8, W / 4)
            out[i, j] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return torch.from_numpy(out)


def loop_pooling(features: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """The official style, one mask at a time: the grid upsampled to (H/4, W/4), the mean under the mask
    resized there (nearest), and the mean in the context box: the mask's box in the published convention
    (w = xmax - xmin, no +1), grown by 100 px, clamped to the image, divided by 4, at least one cell."""
    B, N, H, W = masks.shape
    gh, gw = H // 4, W // 4
    grid = F.interpolate(features, size=(gh, gw), mode="bilinear", align_corners=False)
    out = torch.zeros(B, N, 2 * features.shape[1])
    for b in range(B):
        for n in range(N):
            m = masks[b, n]
            small = torch.from_numpy(resize_mask(m, gh, gw))
            if small.any():
                out[b, n, : features.shape[1]] = grid[b][:, small].mean(1)
            x, y, w, h = mask_box(m)  # inclusive: xmax - xmin + 1
            w, h = max(w - 1, 0), max(h - 1, 0)
            x0, y0 = min(max(x - 100, 0), W) // 4, min(max(y - 100, 0), H) // 4
            x1, y1 = max(min(x + w + 100, W) // 4, x0 + 1), max(min(y + h + 100, H) // 4, y0 + 1)
            x0, y0, x1, y1 = min(x0, gw - 1), min(y0, gh - 1), min(x1, gw), min(y1, gh)
            out[b, n, features.shape[1] :] = grid[b][:, y0:y1, x0:x1].mean((1, 2))
    return out


def timed(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="base")
    ap.add_argument("--ego-grid", type=int, nargs=2, default=[16, 16])
    ap.add_argument("--exo-grid", type=int, nargs=2, default=[12, 21])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--pool-batch", type=int, default=None, help="samples of the pooling comparison (default --batch)")
    ap.add_argument("--smoke", action="store_true", help="tiny network, grids and batches, one repeat")
    a = ap.parse_args()
    if a.smoke:
        a.arch, a.ego_grid, a.exo_grid, a.batch, a.candidates, a.repeats, a.pool_batch = "tiny", [4, 4], [3, 5], 2, 4, 1, 1
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    cfg = {"kind": "dinov2", "weights": "untrained", "tiny": ARCHS[a.arch], "ego_grid": a.ego_grid, "exo_grid": a.exo_grid}
    backbone = load_backbone(cfg)
    ego_hw, exo_hw = backbone.input_size("ego"), backbone.input_size("exo")
    head = MatchingHead(src_grid=a.exo_grid, dst_grid=a.ego_grid, in_channels=backbone.channels)
    opt = torch.optim.AdamW(head.parameters(), lr=8e-5)
    ego_imgs = [rng.integers(0, 255, (*ego_hw, 3), dtype=np.uint8) for _ in range(a.batch)]
    exo_imgs = [rng.integers(0, 255, (*exo_hw, 3), dtype=np.uint8) for _ in range(a.batch)]
    src_masks = random_masks(rng, a.batch, 1, *exo_hw)
    cand_masks = random_masks(rng, a.batch, a.candidates, *ego_hw)
    target = torch.zeros(a.batch, dtype=torch.long)
    visible = torch.ones(a.batch)
    stored_src = backbone.features(exo_imgs, "exo").clone()
    stored_dst = backbone.features(ego_imgs, "ego").clone()

    def step(src, dst):
        loss = matching_loss(score_candidates(head, src, dst, src_masks, cand_masks), target, visible)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def pre_extracted():
        step(stored_src.clone(), stored_dst.clone())

    def on_the_fly():
        step(backbone.features(exo_imgs, "exo").clone(), backbone.features(ego_imgs, "ego").clone())

    t_pre = timed(pre_extracted, a.repeats)
    t_fly = timed(on_the_fly, 1, warmup=False)  # the pre-extracted runs warmed the head up

    pool_batch = a.pool_batch or a.batch
    feats = torch.randn(pool_batch, 768, 50, 50)
    masks = random_masks(rng, pool_batch, a.candidates, 700, 700)
    np_masks = masks.numpy()
    with torch.no_grad():
        t_vec = timed(lambda: describe(feats, masks), a.repeats)
        t_loop = timed(lambda: loop_pooling(feats, np_masks), 1, warmup=False)
        err = (describe(feats, masks) - loop_pooling(feats, np_masks)).abs().max().item()

    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU"
    )
    print(
        f"backbone: DINOv2-with-registers architecture '{a.arch}' ({backbone.describe()['parameters'] / 1e6:.1f} M params, untrained), "
        f"grids ego {a.ego_grid} exo {a.exo_grid}, inputs ego {ego_hw} exo {exo_hw}; batch {a.batch}, {a.candidates} candidates"
    )
    print(f"training iteration, pre-extracted: {t_pre * 1e3:.0f} ms")
    print(f"training iteration, on the fly:    {t_fly * 1e3:.0f} ms")
    print(f"on-the-fly / pre-extracted: {t_fly / t_pre:.1f}x")
    print(
        f"pooling {pool_batch}x{a.candidates} masks at 700x700 (50x50x768 grid): vectorised {t_vec * 1e3:.0f} ms, "
        f"per-mask loop {t_loop * 1e3:.0f} ms, ratio {t_loop / t_vec:.1f}x (max abs difference {err:.1e})"
    )


if __name__ == "__main__":
    main()
