"""Real photo pairs with exact masks in both views, from a rectified stereo pair with true disparity.

The Middlebury 2014 motorcycle pair ships with scikit-image (``skimage.data.stereo_motorcycle``:
left, right, and the LEFT view's disparity, ``left[y, x]`` seen at ``right[y, x - d]``; pixels
without ground truth are non-finite). Objects are segments of the left photo (Felzenszwalb
regions of reasonable size with known disparity). Each is carried into the right photo through
the true disparity with z-buffering: when several left pixels land on one right pixel the
nearest (largest disparity) wins, so parts hidden in the right view are removed. Right pixels no
left pixel reaches (seen only by the right camera) belong to no object.

Pairs use both directions (left as exo, right as ego, and the reverse) and crops of the ego
photo, in the robustness set's folder layout (``omama.robustness``), so an object can be
partly or wholly outside the ego view.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omama.io import atomic_path

log = logging.getLogger(__name__)

# (name, exo view, ego view, ego crop as fractions of the width (x0, x1))
PAIRS = (
    ("left-right", "left", "right", (0.0, 1.0)),
    ("right-left", "right", "left", (0.0, 1.0)),
    ("left-right-crop-a", "left", "right", (0.0, 0.62)),
    ("right-left-crop-b", "right", "left", (0.38, 1.0)),
)


def load_motorcycle(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, left disparity in pixels of the resized pair; NaN where unknown) at ``width`` px."""
    from skimage.data import stereo_motorcycle

    left, right, disp = stereo_motorcycle()
    scale = width / left.shape[1]
    size = (width, round(left.shape[0] * scale))
    disp = np.where(np.isfinite(disp), disp, np.nan).astype(np.float32)
    return (
        cv2.resize(left, size, interpolation=cv2.INTER_AREA),
        cv2.resize(right, size, interpolation=cv2.INTER_AREA),
        cv2.resize(disp, size, interpolation=cv2.INTER_NEAREST) * scale,
    )


def warp_labels(labels: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Left-view labels -> right-view labels through the left disparity, nearest surface wins.

    Each left pixel with known disparity lands on the two right pixels around ``x - d``
    (no holes where the surface stretches); 0 where no left pixel lands.
    """
    h, w = labels.shape
    ys, xs = np.nonzero(np.isfinite(disp))
    d = disp[ys, xs]
    xr = xs - d
    ys, d, lab = np.concatenate([ys, ys]), np.concatenate([d, d]), np.concatenate([labels[ys, xs]] * 2)
    xt = np.concatenate([np.floor(xr), np.ceil(xr)]).astype(int)
    inside = (xt >= 0) & (xt < w)
    target = ys[inside] * w + xt[inside]
    d, lab = d[inside], lab[inside]
    depth = np.full(h * w, -np.inf)
    np.maximum.at(depth, target, d)
    win = d == depth[target]
    out = np.zeros(h * w, labels.dtype)
    out[target[win]] = lab[win]
    return out.reshape(h, w)


def segment_objects(image: np.ndarray, disp: np.ndarray, n: int, min_area: float = 0.01, max_area: float = 0.08) -> np.ndarray:
    """Label image (0 = no object, 1..k) of up to ``n`` segments of the left photo.

    Felzenszwalb regions whose area is a ``min_area``..``max_area`` share of the image, with
    known disparity on at least 90% of their pixels, reasonably compact (at least 30% of their
    bounding box), not touching the border (floor and walls), largest first; each kept as its largest connected part, opened by 1 px.
    """
    from skimage.segmentation import felzenszwalb

    regions = felzenszwalb(image, scale=300, sigma=0.8, min_size=150)
    total = regions.size
    chosen = []
    for r in np.unique(regions):
        m = regions == r
        m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        k, comp, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
        if k < 2:
            continue
        big = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
        m = comp == big
        area = int(m.sum())
        x, y, bw, bh = stats[big, :4]
        inside = x > 0 and y > 0 and x + bw < m.shape[1] and y + bh < m.shape[0]
        if (
            inside
            and min_area * total <= area <= max_area * total
            and np.isfinite(disp[m]).mean() >= 0.9
            and area >= 0.3 * bw * bh
        ):
            chosen.append((area, m))
    chosen.sort(key=lambda t: -t[0])
    labels = np.zeros(image.shape[:2], np.int32)
    for i, (_, m) in enumerate(chosen[:n], start=1):
        labels[m & (labels == 0)] = i
    return labels


def write_motorcycle_pairs(out_dir: str | Path, *, width: int = 300, objects: int = 6) -> list[str]:
    """Write the motorcycle pairs (``PAIRS``) in the robustness folder layout; returns the pair names."""
    left, right, disp = load_motorcycle(width)
    labels = {"left": segment_objects(left, disp, objects)}
    labels["right"] = warp_labels(labels["left"], disp)
    images = {"left": left, "right": right}
    k = int(labels["left"].max())
    if k < 2:
        raise ValueError(f"motorcycle pair at width {width}: only {k} object segments found; use a larger width")
    names = [f"segment_{i}" for i in range(1, k + 1)]
    with atomic_path(out_dir) as tmp:
        for pair, exo, ego, (x0, x1) in PAIRS:
            d = tmp / pair / "masks"
            d.mkdir(parents=True)
            a, b = round(x0 * width), round(x1 * width)
            Image.fromarray(images[exo]).save(tmp / pair / "exo.png")
            Image.fromarray(images[ego][:, a:b]).save(tmp / pair / "ego.png")
            for i, name in enumerate(names, start=1):
                Image.fromarray(((labels[exo] == i) * 255).astype(np.uint8)).save(d / f"{name}.exo.png")
                ego_mask = labels[ego][:, a:b] == i
                if ego_mask.any():
                    Image.fromarray((ego_mask * 255).astype(np.uint8)).save(d / f"{name}.ego.png")
            log.info("pair %s: exo %s, ego %s columns %d..%d", pair, exo, ego, a, b)
    log.info("%d motorcycle pairs with %d objects at %dx%d -> %s", len(PAIRS), k, width, left.shape[0], out_dir)
    return [p[0] for p in PAIRS]
