"""Class-agnostic mask proposals for the ego (or exo) frames of a take, and their recall.

Three proposers (``config["proposers"][name]["kind"]``):
- ``fastsam``: Ultralytics FastSAM in segment-everything mode, every mask kept.
- ``sam``: a SAM-family checkpoint (MobileSAM by default; SAM, SAM 2) through Ultralytics' SAM
  predictor, segment everything over a point grid; the masks filtered by area and de-duplicated
  by mask IoU like the classical ones; a mask's score is SAM's predicted IoU (a regression
  output, not clipped: it can exceed 1; scores only order the masks for de-duplication).
- ``classical``: no weights; Felzenszwalb graph segmentation of the frame at several scales,
  both on RGB and on shading-free chromaticity, borders snapped to image edges by a
  watershed, split into connected components, filtered
  by area and de-duplicated by mask IoU. A mask's score is its stability: the share of the
  segmentations that produce it (IoU >= ``max_iou``).

Outputs are COCO RLE (``omama.data.masks``), never dense arrays.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils
from scipy import ndimage
from skimage.filters import sobel
from skimage.measure import label as measure_label
from skimage.segmentation import felzenszwalb, find_boundaries, watershed
from tqdm import tqdm

from omama.data.masks import decode_rle, encode_rle, mask_box, resize_mask
from omama.io import load_frame, read_json, read_parquet, write_parquet
from omama.layout import frame_file

log = logging.getLogger(__name__)

PROPOSAL_COLUMNS = ["frame", "proposal", "height", "width", "counts", "x", "y", "w", "h", "score", "area"]
RECALL_COLUMNS = ["take_uid", "object", "frame", "gt_area", "best_iou", "n_proposals"]
FELZENSZWALB_K = 300.0  # graph threshold at scale 1.0 for a 224-pixel image; grows with the image side


@dataclass
class ProposalSet:
    """The proposals of one frame: RLE masks at (height, width), boxes (x, y, w, h), scores."""

    height: int
    width: int
    counts: list[str]
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)

    def masks(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """bool (N, H, W), resized nearest when a size other than the stored one is asked."""
        height, width = height or self.height, width or self.width
        out = np.zeros((len(self), height, width), dtype=bool)
        for i, c in enumerate(self.counts):
            out[i] = resize_mask(decode_rle({"size": [self.height, self.width], "counts": c}), height, width)
        return out


def load_proposals(path) -> dict[int, ProposalSet]:
    """``{frame: ProposalSet}`` of an ego proposals parquet; processed frames without proposals map to empty sets."""
    df = read_parquet(path)
    return _by_frame(df, df.attrs.get("image_size"), df.attrs.get("frames", []), path)


def load_camera_proposals(path) -> dict[str, dict[int, ProposalSet]]:
    """``{camera: {frame: ProposalSet}}`` of an exo proposals parquet (``view="exo"``)."""
    df = read_parquet(path)
    if "camera" not in df.columns or "cameras" not in df.attrs:
        raise ValueError(f"proposals file {path} is not a per-camera (exo) proposals file")
    return {
        cam: _by_frame(df[df["camera"] == cam], a["image_size"], a["frames"], f"{path} (camera {cam!r})")
        for cam, a in df.attrs["cameras"].items()
    }


def _by_frame(df: pd.DataFrame, size, frames, path) -> dict[int, ProposalSet]:
    missing = set(PROPOSAL_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"proposals file {path} lacks columns {sorted(missing)}")
    out = (
        {
            int(f): ProposalSet(int(size[0]), int(size[1]), [], np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
            for f in frames
        }
        if size
        else {}
    )
    for frame, g in df.sort_values(["frame", "proposal"]).groupby("frame", sort=True):
        sizes = sorted(set(zip(g["height"].astype(int), g["width"].astype(int))))
        if len(sizes) != 1:
            raise ValueError(f"proposals file {path}: frame {int(frame)} mixes mask sizes {sizes}")
        out[int(frame)] = ProposalSet(
            *sizes[0], g["counts"].tolist(), g[["x", "y", "w", "h"]].to_numpy(np.float32), g["score"].to_numpy(np.float32)
        )
    return out


def _rles(masks) -> list[dict]:
    return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]


def mask_iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """(len(a), len(b)) IoU of pycocotools RLEs."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a, b, [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def large_enough(rle: dict, min_px: float, total: int) -> bool:
    """A proposal covers at least ``min_px`` pixels and not the whole frame (``total`` pixels)."""
    return min_px <= mask_utils.area(rle) < total


def distinct(order, iou: np.ndarray, max_iou: float) -> list[int]:
    """Indices in ``order`` (best first), each dropped when its IoU with one already kept reaches ``max_iou``."""
    keep: list[int] = []
    for i in order:
        if not keep or iou[i, keep].max() < max_iou:
            keep.append(int(i))
    return keep


def snap_to_edges(labels: np.ndarray, edges: np.ndarray, margin: int = 2) -> np.ndarray:
    """Re-grow segments from their interiors by watershed on the edge map.

    Graph segmentation of a smoothed image leaves a ring of blended pixels at object
    borders in the wrong segment; the watershed moves each border onto the strongest edge.
    """
    border = ndimage.binary_dilation(find_boundaries(labels, mode="thick"), iterations=margin)
    return watershed(edges, np.where(border, 0, labels + 1)) - 1


class ClassicalProposer:
    """Weights-free multi-scale Felzenszwalb proposals (see the module docstring). The segmentations are
    independent: ``threads`` of them run at once (scikit-image releases the GIL), with the same result."""

    def __init__(self, *, scales, min_area: float, max_iou: float, threads: int = 1):
        self.scales, self.min_area, self.max_iou = list(scales), float(min_area), float(max_iou)
        self.threads = max(1, int(threads))

    def segmentations(self, image: np.ndarray) -> list[np.ndarray]:
        """One integer label map per (scale, colour space), boundaries snapped to edges."""
        rgb = image.astype(np.float64) / 255
        chroma = rgb / np.maximum(rgb.sum(axis=2, keepdims=True), 1e-3)
        k = FELZENSZWALB_K * max(image.shape[:2]) / 224
        min_size = max(4, int(self.min_area * image.shape[0] * image.shape[1] / 2))

        def segment(im, edges, s):
            return snap_to_edges(felzenszwalb(im, scale=k * s, sigma=0.8, min_size=min_size), edges)

        runs = []
        for im in (rgb, chroma):
            edges = np.max([sobel(im[..., c]) for c in range(3)], axis=0)
            runs += [(im, edges, s) for s in self.scales]
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(lambda run: segment(*run), runs))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (H, W, 3) -> bool masks (N, H, W), scores (N,)."""
        H, W = image.shape[:2]
        min_px = self.min_area * H * W
        rles, runs = [], []
        for run, labels in enumerate(self.segmentations(image)):
            regions = measure_label(labels + 1, background=0, connectivity=1)
            for k in range(1, regions.max() + 1):
                r = _rles([regions == k])[0]
                if large_enough(r, min_px, H * W):
                    rles.append(r)
                    runs.append(run)
        if not rles:
            return np.zeros((0, H, W), bool), np.zeros(0, np.float32)
        iou = mask_iou(rles, rles)
        runs = np.asarray(runs)
        same = iou >= self.max_iou
        stability = np.array([len(np.unique(runs[row])) for row in same], dtype=np.float32) / (2 * len(self.scales))
        areas = np.array([mask_utils.area(r) for r in rles])
        keep = distinct(np.lexsort((-areas, -stability)), iou, self.max_iou)
        return mask_utils.decode([rles[i] for i in keep]).transpose(2, 0, 1).astype(bool), stability[keep]


class FastSAMProposer:
    """Ultralytics FastSAM, segment everything, every mask kept."""

    def __init__(self, weights: str, *, device: str, imgsz: int, conf: float, iou: float, retina_masks: bool):
        from ultralytics import FastSAM

        if not Path(weights).is_file():
            raise FileNotFoundError(f"FastSAM weights not found: {weights} (download FastSAM-x.pt / FastSAM-s.pt)")
        self.model = FastSAM(str(weights))
        self.kwargs = dict(imgsz=imgsz, conf=conf, iou=iou, retina_masks=retina_masks, device=device, verbose=False)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        H, W = image.shape[:2]
        result = self.model(np.ascontiguousarray(image[..., ::-1]), **self.kwargs)[0]
        if result.masks is None or len(result.masks) == 0:
            return np.zeros((0, H, W), bool), np.zeros(0, np.float32)
        data = result.masks.data
        if tuple(data.shape[-2:]) != (H, W):
            from ultralytics.utils.ops import scale_masks

            data = scale_masks(data[None], (H, W))[0]
        return data.cpu().numpy() > 0.5, result.boxes.conf.cpu().numpy().astype(np.float32)


class SAMProposer:
    """A SAM-family checkpoint (MobileSAM, SAM, SAM 2) through Ultralytics' SAM predictor, segment
    everything over a ``points_per_side``² grid; masks at the image size, filtered by ``min_area``
    and de-duplicated by mask IoU (``max_iou``) like the classical proposer; score = predicted IoU."""

    POINTS_BATCH = 64

    def __init__(
        self,
        *,
        weights: str,
        device: str,
        imgsz: int,
        points_per_side: int,
        pred_iou: float,
        stability: float,
        min_area: float,
        max_iou: float,
    ):
        from ultralytics.models.sam import Predictor, SAM2Predictor
        from ultralytics.models.sam.build import sam_model_map

        from omama.weights import resolve_weights

        path = resolve_weights(weights=weights)
        if not any(path.name.endswith(k) for k in sam_model_map):
            raise ValueError(
                f"SAM weights {path}: Ultralytics builds a SAM model from the file name, which must end with "
                f"one of {sorted(sam_model_map)}"
            )
        # The predictor Ultralytics' own SAM class picks for the file (SAM2Predictor for sam2*).
        kind = SAM2Predictor if "sam2" in path.stem else Predictor
        self.predictor = kind(overrides=dict(model=str(path), imgsz=imgsz, device=device, conf=0.0, verbose=False, save=False))
        self.predictor.setup_model(verbose=False)  # the checkpoint loads now (its errors surface here), quietly
        self.generate = dict(
            points_stride=points_per_side,
            points_batch_size=self.POINTS_BATCH,
            conf_thres=pred_iou,
            stability_score_thresh=stability,
        )
        self.min_area, self.max_iou = float(min_area), float(max_iou)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (H, W, 3) -> bool masks (N, H, W), scores (N,)."""
        H, W = image.shape[:2]
        result = self.predictor(source=np.ascontiguousarray(image[..., ::-1]), **self.generate)[0]
        if result.masks is None or len(result.masks) == 0:
            return np.zeros((0, H, W), bool), np.zeros(0, np.float32)
        masks = result.masks.data.cpu().numpy() > 0.5
        if masks.shape[1:] != (H, W):
            raise RuntimeError(f"SAM predictor returned masks of {masks.shape[1:]} for a {H}x{W} frame")
        scores = result.boxes.conf.cpu().numpy().astype(np.float32)
        rles = _rles(masks)
        ok = [i for i, r in enumerate(rles) if large_enough(r, self.min_area * H * W, H * W)]
        if not ok:
            return np.zeros((0, H, W), bool), np.zeros(0, np.float32)
        rles, masks, scores = [rles[i] for i in ok], masks[ok], scores[ok]
        areas = np.array([mask_utils.area(r) for r in rles])
        keep = distinct(np.lexsort((-areas, -scores)), mask_iou(rles, rles), self.max_iou)
        return masks[keep], scores[keep]


def make_proposer(cfg: dict, device: str | None = None, threads: int = 1):
    """The proposer a ``config["proposers"][name]`` entry describes, through its kind (``omama.proposals.kinds``,
    or a plug-in's), on ``device`` (default its own); the classical one segments with ``threads`` threads,
    which changes nothing but its speed."""
    from omama.config import entry
    from omama.registry import PROPOSERS

    cfg = entry("proposers", cfg)  # the schema's defaults (its kind's too)
    device = device or cfg["device"]
    if device != "cpu":  # torch is imported only where a device is asked for (the classical proposer needs none)
        from omama.features.backbones import check_device

        check_device(device)
    return PROPOSERS.get(cfg["kind"]).load(cfg, device, threads)


def _propose_camera(annotation: dict, images_dir, cam: str, frames: list[int], proposer) -> tuple[list, list, tuple | None]:
    """Proposal rows and recall rows (see ``propose_take``) of one camera's frames, and its frame size."""
    take = annotation["take_uid"]
    rows, recall, size = [], [], None
    for frame in tqdm(frames, desc=f"proposals {take} {cam}", mininterval=5):
        image = load_frame(Path(images_dir) / cam / frame_file(frame), take, cam, frame)
        H, W = image.shape[:2]
        size = size or (H, W)
        if (H, W) != size:
            raise ValueError(f"frame {frame} of take {take!r} (camera {cam!r}) is {H}x{W}, others {size}")
        masks, scores = proposer(image)
        rles = _rles(masks)
        for i, (m, s) in enumerate(zip(masks, scores)):
            x, y, w, h = mask_box(m)
            rows.append((frame, i, H, W, encode_rle(m)["counts"], x, y, w, h, float(s), int(m.sum())))
        for obj, cams in annotation.get("masks", {}).items():
            gt_rle = cams.get(cam, {}).get(str(frame))
            if gt_rle is None:
                continue
            try:
                gt = resize_mask(decode_rle(gt_rle), H, W)
            except Exception as e:
                raise ValueError(
                    f"undecodable GT mask: take {take!r}, object {obj!r}, camera {cam!r}, frame {frame}: {e}"
                ) from e
            iou = mask_iou(_rles([gt]), rles)
            recall.append((take, obj, frame, int(gt.sum()), float(iou.max()) if iou.size else 0.0, len(rles)))
    return rows, recall, size


PROPOSAL_TYPES = {
    "frame": "int64",
    "proposal": "int32",
    "height": "int32",
    "width": "int32",
    "x": "int32",
    "y": "int32",
    "w": "int32",
    "h": "int32",
    "score": "float32",
    "area": "int64",
}
RECALL_TYPES = {"frame": "int64", "gt_area": "int64", "best_iou": "float64", "n_proposals": "int64"}


def propose_take(
    *,
    annotation_json,
    images_dir,
    out_proposals,
    out_recall,
    proposer_cfg: dict,
    device: str | None = None,
    view: str = "ego",
    proposer=None,
) -> dict:
    """Proposals for every frame in ``subsample_idx`` of one take's ego camera (``view="ego"``) or
    of each of its exo cameras (``view="exo"``, for the ego->exo direction), and their recall of
    the GT masks of that view.

    Recall rows: one per GT mask at a processed frame (objects absent from the view have no
    mask and no row); the GT is resized nearest to the processed frame size, where
    ``gt_area`` is counted and ``best_iou`` is the highest IoU any proposal reaches (0 with none).
    Exo files add a ``camera`` column to both tables, and their attrs hold per camera its
    frames and image size (see :func:`load_camera_proposals`).
    """
    if view not in ("ego", "exo"):
        raise ValueError(f"proposal view must be 'ego' or 'exo', got {view!r}")
    annotation = read_json(annotation_json, "annotation")
    take = annotation["take_uid"]
    frames = sorted(int(f) for f in annotation["subsample_idx"])
    proposer = proposer or make_proposer(proposer_cfg, device)  # an already built one (omama match keeps it)
    started = time.perf_counter()
    cams = [annotation["ego_cam"]] if view == "ego" else list(annotation["exo_cams"])
    tables, recalls, attrs = [], [], {}
    for cam in cams:
        rows, recall, size = _propose_camera(annotation, images_dir, cam, frames, proposer)
        df = pd.DataFrame(rows, columns=PROPOSAL_COLUMNS).astype(PROPOSAL_TYPES)
        rec = pd.DataFrame(recall, columns=RECALL_COLUMNS).astype(RECALL_TYPES)
        if view == "exo":
            df.insert(0, "camera", cam)
            rec.insert(1, "camera", cam)
        tables.append(df)
        recalls.append(rec)
        attrs[cam] = {"frames": frames, "image_size": list(size) if size else None}
    df, rec = pd.concat(tables, ignore_index=True), pd.concat(recalls, ignore_index=True)
    if view == "ego":
        df.attrs = {"take_uid": take, **attrs[cams[0]], "proposer": proposer_cfg["kind"]}
    else:
        df.attrs = {"take_uid": take, "cameras": attrs, "proposer": proposer_cfg["kind"]}
    write_parquet(out_proposals, df)
    write_parquet(out_recall, rec)
    summary = {
        "take_uid": take,
        "view": view,
        "cameras": cams,
        "frames": len(frames),
        "proposals": len(df),
        "mean_best_iou": float(rec["best_iou"].mean()) if len(rec) else None,
        "seconds": round(time.perf_counter() - started, 3),  # with the proposer loaded (benchmarks/rehearsal.py)
    }
    log.info("proposals of take %s: %s", take, summary)
    return summary
