"""Mask proposals: classical recall on synthetic frames, FastSAM checkpoint loading, output tables."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from omama.masks import decode_rle, encode_rle, mask_box
from omama.proposals import load_proposals, make_proposer, mask_iou, propose_take

SYNTH = {"seed": 0, "seconds": 3, "objects": 4, "ego_size": 128, "exo_size": [72, 128], "exo_cameras": 2}


def rle(mask: np.ndarray) -> dict:
    return encode_rle(mask)


def best_ious(gts: list[np.ndarray], masks: np.ndarray) -> np.ndarray:
    from pycocotools import mask as mask_utils

    enc = lambda ms: [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in ms]  # noqa: E731
    return mask_iou(enc(gts), enc(masks)).max(axis=1) if len(masks) else np.zeros(len(gts))


def drawn_frame(seed: int = 0, size: int = 96):
    """Flat-coloured, shaded shapes on a noisy table colour, with their masks."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (120.0, 100.0, 80.0)) + rng.normal(0, 5, (size, size, 3))
    xx = np.arange(size)[None, :].repeat(size, 0)
    gts = []
    for k, colour in enumerate([(200, 40, 40), (40, 160, 60), (50, 60, 200)]):
        m = np.zeros((size, size), np.uint8)
        cx, cy, r = 20 + 28 * k, int(rng.integers(25, size - 25)), int(rng.integers(8, 12))
        if k % 2:
            cv2.rectangle(m, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
        else:
            cv2.circle(m, (cx, cy), r, 1, -1)
        shade = 0.6 + 0.4 * np.clip((xx - cx + r) / (2 * r), 0, 1)
        img[m > 0] = (np.array(colour) * shade[..., None])[m > 0]
        gts.append(m > 0)
    return np.clip(img, 0, 255).astype(np.uint8), gts


def synthetic_take(root: Path, n_frames: int = 2) -> tuple[Path, dict]:
    """One synthetic take (omama.synthetic renderer) written in the extract stage's layout, ego camera only."""
    from omama.synthetic.scene import EGO_CAM, Take

    take = Take(SYNTH, 0)
    frames = take.annotated[:n_frames]
    (root / "images" / EGO_CAM).mkdir(parents=True)
    masks: dict = {}
    for f in frames:
        fr = take.render(EGO_CAM, f)
        cv2.imwrite(str(root / "images" / EGO_CAM / f"{f}.jpg"), fr.rgb()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        for i, o in enumerate(take.objects):
            if (fr.ids == i + 1).sum() >= 8:
                masks.setdefault(o.name, {})[EGO_CAM] = {
                    **masks.get(o.name, {}).get(EGO_CAM, {}),
                    str(f): rle(fr.ids == i + 1),
                }
    ann = {"take_uid": "synthetic-0", "ego_cam": EGO_CAM, "exo_cams": [], "subsample_idx": frames, "masks": masks}
    (root / "annotation.json").write_text(json.dumps(ann))
    return root, ann


def test_classical_borders_follow_object_edges():
    img, gts = drawn_frame()
    masks, scores = make_proposer({"kind": "classical"})(img)
    assert masks.dtype == bool and masks.shape[1:] == img.shape[:2] and len(scores) == len(masks)
    assert np.all((scores > 0) & (scores <= 1))
    assert best_ious(gts, masks).min() > 0.9


def test_classical_recall_on_synthetic_frames():
    from omama.synthetic.scene import EGO_CAM, Take

    take = Take(SYNTH, 1)
    proposer = make_proposer({"kind": "classical"})
    ious = []
    for f in take.annotated[:3]:
        fr = take.render(EGO_CAM, f)
        gts = [fr.ids == i + 1 for i in range(len(take.objects))]
        gts = [g for g in gts if g.sum() >= proposer.min_area * g.size]
        masks, _ = proposer(fr.rgb())
        ious += list(best_ious(gts, masks))
    ious = np.array(ious)
    assert len(ious) >= 6
    assert ious.mean() > 0.6 and (ious > 0.5).mean() >= 0.6, ious


def test_propose_take_tables_and_loader(tmp_path):
    root, ann = synthetic_take(tmp_path / "frames")
    out, rec = tmp_path / "p" / "synthetic-0.parquet", tmp_path / "p" / "synthetic-0.recall.parquet"
    propose_take(
        annotation_json=root / "annotation.json",
        images_dir=root / "images",
        out_proposals=out,
        out_recall=rec,
        proposer_cfg={"kind": "classical"},
    )
    df = pd.read_parquet(out)
    assert list(df.columns) == ["frame", "proposal", "height", "width", "counts", "x", "y", "w", "h", "score", "area"]
    assert (df["height"] == 128).all() and (df["width"] == 128).all()
    props = load_proposals(out)
    assert sorted(props) == ann["subsample_idx"]
    for frame, ps in props.items():
        masks = ps.masks()
        assert masks.shape == (len(ps), 128, 128) and ps.boxes.shape == (len(ps), 4)
        assert [tuple(b) for b in ps.boxes.astype(int)] == [mask_box(m) for m in masks]
        assert df[df.frame == frame]["area"].tolist() == [int(m.sum()) for m in masks]
        assert ps.masks(64, 64).shape == (len(ps), 64, 64)
    recall = pd.read_parquet(rec)
    cam = ann["ego_cam"]
    listed = {(o, int(f)) for o, cams in ann["masks"].items() for f in cams.get(cam, {})}
    assert set(zip(recall["object"], recall["frame"])) == listed
    row = recall.iloc[0]
    gt = decode_rle(ann["masks"][row["object"]][cam][str(row["frame"])])
    expected = best_ious([gt], props[int(row["frame"])].masks()).max()
    assert row["best_iou"] == pytest.approx(expected) and row["n_proposals"] == len(props[int(row["frame"])])
    assert (recall["take_uid"] == "synthetic-0").all() and recall["best_iou"].between(0, 1).all()


def test_zero_proposals_are_handled(tmp_path):
    root, ann = synthetic_take(tmp_path / "frames", n_frames=1)
    out, rec = tmp_path / "p.parquet", tmp_path / "r.parquet"
    propose_take(
        annotation_json=root / "annotation.json",
        images_dir=root / "images",
        out_proposals=out,
        out_recall=rec,
        proposer_cfg={"kind": "classical", "min_area": 1.0},
    )
    props = load_proposals(out)
    (frame,) = ann["subsample_idx"]
    assert len(props[frame]) == 0 and props[frame].masks().shape == (0, 128, 128)
    recall = pd.read_parquet(rec)
    assert len(recall) > 0 and (recall["best_iou"] == 0).all() and (recall["n_proposals"] == 0).all()


@pytest.fixture(scope="module")
def tiny_fastsam(tmp_path_factory) -> Path:
    """An untrained YOLOv8n-seg built from its yaml, saved in the Ultralytics checkpoint format FastSAM loads."""
    import torch
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("fastsam") / "FastSAM-tiny.pt"
    torch.manual_seed(0)
    YOLO("yolov8n-seg.yaml").save(path)
    return path


def test_fastsam_checkpoint_segment_everything(tiny_fastsam):
    img, _ = drawn_frame(size=80)
    many = make_proposer({"kind": "fastsam", "weights": str(tiny_fastsam), "imgsz": 64, "conf": 0.0})
    masks, scores = many(img)
    assert len(masks) > 0 and masks.shape[1:] == (80, 80) and masks.dtype == bool and len(scores) == len(masks)
    none = make_proposer({"kind": "fastsam", "weights": str(tiny_fastsam), "imgsz": 64, "conf": 1.0})
    masks, scores = none(img)
    assert masks.shape == (0, 80, 80) and scores.shape == (0,)


def test_fastsam_take_and_missing_weights(tmp_path, tiny_fastsam):
    root, ann = synthetic_take(tmp_path / "frames", n_frames=1)
    out, rec = tmp_path / "p.parquet", tmp_path / "r.parquet"
    propose_take(
        annotation_json=root / "annotation.json",
        images_dir=root / "images",
        out_proposals=out,
        out_recall=rec,
        proposer_cfg={"kind": "fastsam", "weights": str(tiny_fastsam), "imgsz": 64, "conf": 0.0},
    )
    (ps,) = load_proposals(out).values()
    assert len(ps) > 0 and ps.masks().shape[1:] == (128, 128)
    with pytest.raises(FileNotFoundError, match="FastSAM weights not found"):
        make_proposer({"kind": "fastsam", "weights": str(tmp_path / "FastSAM-x.pt")})


def test_missing_ego_frame_is_named(tmp_path):
    root, ann = synthetic_take(tmp_path / "frames", n_frames=2)
    f = ann["subsample_idx"][1]
    (root / "images" / ann["ego_cam"] / f"{f}.jpg").unlink()
    with pytest.raises(ValueError, match=f"take 'synthetic-0', camera 'aria01_214-1', frame {f}"):
        propose_take(
            annotation_json=root / "annotation.json",
            images_dir=root / "images",
            out_proposals=tmp_path / "p.parquet",
            out_recall=tmp_path / "r.parquet",
            proposer_cfg={"kind": "classical"},
        )
    assert not (tmp_path / "p.parquet").exists()


def test_a_frame_mixing_mask_sizes_is_an_error(tmp_path):
    """A frame's size comes from all its proposals, not from the first one read."""
    root, ann = synthetic_take(tmp_path / "frames")
    out = tmp_path / "p" / "synthetic-0.parquet"
    propose_take(
        annotation_json=root / "annotation.json",
        images_dir=root / "images",
        out_proposals=out,
        out_recall=tmp_path / "p" / "r.parquet",
        proposer_cfg={"kind": "classical"},
    )
    df = pd.read_parquet(out)
    frame = int(df.frame.iloc[0])
    small = encode_rle(np.ones((64, 64), bool))
    last = df.index[df.frame == frame][-1]
    df.loc[last, ["height", "width", "counts"]] = [64, 64, small["counts"]]
    df.to_parquet(out, index=False)
    with pytest.raises(ValueError, match=rf"synthetic-0.parquet: frame {frame} mixes mask sizes \[\(64, 64\), \(128, 128\)\]"):
        load_proposals(out)
