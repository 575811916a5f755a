"""Real photo pairs with exact masks in both views, from a rectified stereo pair with true disparity.

The Middlebury 2014 motorcycle pair ships with scikit-image (``skimage.data.stereo_motorcycle``:
left, right, and the LEFT view's disparity, ``left[y, x]`` seen at ``right[y, x - d]``; pixels
without ground truth are non-finite). Objects are segments of the left photo (Felzenszwalb
regions of reasonable size with known disparity). Each is carried into the right photo through
the true disparity with z-buffering: when several left pixels land on one right pixel the
nearest (largest disparity) wins, so parts hidden in the right view are removed. Right pixels no
left pixel reaches (seen only by the right camera) belong to no object.

Pairs use both directions (left as exo, right as ego, and the reverse) and crops of the ego
photo, in the photos kind's folder layout (``omama.data.photos``), so an object can be
partly or wholly outside the ego view. The rectified pairs differ only by a horizontal shift,
which leaves a matcher little to get wrong; the *moved-camera* pairs (``views``) show the ego
photo as a camera that also turned, tilted and came closer would: the other view resampled
through a known, seeded homography (``moved_camera``) into a square ego frame. Their masks go
through the same homography (nearest neighbour); outside the source photo the frame is black
and belongs to no object.
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


def write_pair(
    folder: Path, exo: np.ndarray, ego: np.ndarray, exo_labels: np.ndarray, ego_labels: np.ndarray, names: list[str]
) -> None:
    """One pair folder: both photos, each object's exo mask and (where it is visible) its ego mask."""
    (folder / "masks").mkdir(parents=True)
    Image.fromarray(exo).save(folder / "exo.png")
    Image.fromarray(ego).save(folder / "ego.png")
    for i, name in enumerate(names, start=1):
        Image.fromarray(((exo_labels == i) * 255).astype(np.uint8)).save(folder / "masks" / f"{name}.exo.png")
        if (ego_labels == i).any():
            Image.fromarray(((ego_labels == i) * 255).astype(np.uint8)).save(folder / "masks" / f"{name}.ego.png")


def moved_camera(rng: np.random.Generator, shape: tuple[int, int], side: int) -> np.ndarray:
    """Homography from a (h, w) photo to a ``side`` x ``side`` frame of a moved camera.

    The frame shows a square region of 35-70 % of the photo's height squared, rotated by up to
    30 degrees, its corners displaced by about 5 % of its side (a tilt): the camera turned,
    rolled and moved closer.
    """
    h, w = shape
    half = h * np.sqrt(rng.uniform(0.35, 0.7)) / 2
    centre = rng.uniform([half, half], [w - half, h - half])
    a = np.deg2rad(rng.uniform(-30, 30))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    quad = square @ rot.T + centre + rng.normal(0, 0.1 * half, (4, 2))
    frame = np.array([[0, 0], [side, 0], [side, side], [0, side]])
    return cv2.getPerspectiveTransform(quad.astype(np.float32), frame.astype(np.float32))


def write_motorcycle_pairs(out_dir: str | Path, *, width: int, objects: int, views: int, seed: int) -> list[str]:
    """Write the motorcycle pairs in the photos kind's folder layout: ``PAIRS``, then ``views``
    moved-camera pairs (``view-{i}``, directions alternating, homographies seeded by ``seed``);
    returns the pair names."""
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
            a, b = round(x0 * width), round(x1 * width)
            write_pair(tmp / pair, images[exo], images[ego][:, a:b], labels[exo], labels[ego][:, a:b], names)
            log.info("pair %s: exo %s, ego %s columns %d..%d", pair, exo, ego, a, b)
        rng = np.random.default_rng(seed)
        side = left.shape[0]
        for i in range(views):
            exo, ego = ("left", "right") if i % 2 == 0 else ("right", "left")
            h = moved_camera(rng, left.shape[:2], side)
            frame = cv2.warpPerspective(images[ego], h, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
            ego_labels = cv2.warpPerspective(
                labels[ego].astype(np.uint16), h, (side, side), flags=cv2.INTER_NEAREST, borderValue=0
            )
            write_pair(tmp / f"view-{i}", images[exo], frame, labels[exo], ego_labels, names)
            log.info("pair view-%d: exo %s, ego %s through homography %s", i, exo, ego, np.round(h, 4).tolist())
    log.info("%d motorcycle pairs with %d objects at %dx%d -> %s", len(PAIRS) + views, k, width, left.shape[0], out_dir)
    return [p[0] for p in PAIRS] + [f"view-{i}" for i in range(views)]
