"""Mask proposals: classical recall on synthetic frames, FastSAM checkpoint loading, output tables."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from omama.data.masks import decode_rle, encode_rle, mask_box
from omama.proposals.proposers import distinct, load_proposals, make_proposer, mask_iou, propose_take

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


def propose(root: Path, out: Path, recall: Path, **proposer) -> None:
    """propose_take on a synthetic take written at ``root``, with the proposer entry ``proposer``."""
    propose_take(
        annotation_json=root / "annotation.json",
        images_dir=root / "images",
        out_proposals=out,
        out_recall=recall,
        proposer_cfg=proposer,
    )


def test_propose_take_tables_and_loader(tmp_path):
    root, ann = synthetic_take(tmp_path / "frames")
    out, rec = tmp_path / "p" / "synthetic-0.parquet", tmp_path / "p" / "synthetic-0.recall.parquet"
    propose(root, out, rec, kind="classical")
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
    propose(root, out, rec, kind="classical", min_area=1.0)
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
    propose(root, out, rec, kind="fastsam", weights=str(tiny_fastsam), imgsz=64, conf=0.0)
    (ps,) = load_proposals(out).values()
    assert len(ps) > 0 and ps.masks().shape[1:] == (128, 128)
    with pytest.raises(FileNotFoundError, match="FastSAM weights not found"):
        make_proposer({"kind": "fastsam", "weights": str(tmp_path / "FastSAM-x.pt")})


def test_missing_ego_frame_is_named(tmp_path):
    root, ann = synthetic_take(tmp_path / "frames", n_frames=2)
    f = ann["subsample_idx"][1]
    (root / "images" / ann["ego_cam"] / f"{f}.jpg").unlink()
    with pytest.raises(ValueError, match=f"take 'synthetic-0', camera 'aria01_214-1', frame {f}"):
        propose(root, tmp_path / "p.parquet", tmp_path / "r.parquet", kind="classical")
    assert not (tmp_path / "p.parquet").exists()


def test_a_frame_mixing_mask_sizes_is_an_error(tmp_path):
    """A frame's size comes from all its proposals, not from the first one read."""
    root, ann = synthetic_take(tmp_path / "frames")
    out = tmp_path / "p" / "synthetic-0.parquet"
    propose(root, out, tmp_path / "p" / "r.parquet", kind="classical")
    df = pd.read_parquet(out)
    frame = int(df.frame.iloc[0])
    small = encode_rle(np.ones((64, 64), bool))
    last = df.index[df.frame == frame][-1]
    df.loc[last, ["height", "width", "counts"]] = [64, 64, small["counts"]]
    df.to_parquet(out, index=False)
    with pytest.raises(ValueError, match=rf"synthetic-0.parquet: frame {frame} mixes mask sizes \[\(64, 64\), \(128, 128\)\]"):
        load_proposals(out)


def test_distinct_keeps_the_first_of_near_duplicates():
    """The de-duplication the classical and sam proposers share: best first, drops IoU >= max_iou."""
    from omama.proposals.proposers import _rles

    a = np.zeros((20, 20), bool)
    a[2:12, 2:12] = True
    a2 = a.copy()
    a2[12, 2:7] = True  # IoU 100/105 with a
    b = np.zeros((20, 20), bool)
    b[14:18, 14:18] = True
    rles = _rles([a, a2, b])
    iou = mask_iou(rles, rles)
    assert distinct([1, 0, 2], iou, 0.9) == [1, 2]
    assert distinct([0, 1, 2], iou, 0.9) == [0, 2]
    assert distinct([0, 1, 2], iou, 0.99) == [0, 1, 2]
    assert distinct([2, 0, 1], iou, 0.0) == [2]


@pytest.fixture(scope="module")
def tiny_mobile_sam(tmp_path_factory) -> Path:
    """MobileSAM's architecture from Ultralytics' own builder with random weights, saved as the
    state-dict file its ``build_sam`` loads (the name picks the architecture). The mask
    hypernetworks' last layers are scaled up so that random masks are stable (logits beyond ±0.95)."""
    import torch
    from ultralytics.models.sam.build import build_mobile_sam

    torch.manual_seed(0)
    model = build_mobile_sam()
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30)
    path = tmp_path_factory.mktemp("mobile-sam") / "mobile_sam.pt"
    torch.save(model.state_dict(), path)
    return path


SAM_FAST = {"kind": "sam", "imgsz": 128, "points_per_side": 4, "pred_iou": 0.0, "stability": 0.5}


def test_sam_checkpoint_segment_everything(tiny_mobile_sam):
    """Masks at the frame size, scores = the predictor's predicted IoU, then min_area and de-duplication."""
    img, _ = drawn_frame(size=96)
    img = np.ascontiguousarray(img[:, :80])  # not square: masks come back at 96x80
    sam = make_proposer({**SAM_FAST, "weights": str(tiny_mobile_sam), "min_area": 0.0})
    masks, scores = sam(img)
    assert masks.dtype == bool and masks.shape[1:] == (96, 80) and len(masks) >= 1
    assert scores.dtype == np.float32 and scores.shape == (len(masks),) and np.all((scores > 0) & (scores <= 1))
    raw = sam.predictor(source=np.ascontiguousarray(img[..., ::-1]), **sam.generate)[0]
    raw_masks, raw_scores = raw.masks.data.numpy(), raw.boxes.conf.numpy()
    for m, s in zip(masks, scores):  # every kept mask is one of SAM's, with its score
        (j,) = [j for j, r in enumerate(raw_masks) if np.array_equal(r, m)]
        assert s == pytest.approx(raw_scores[j])
    areas = masks.sum(axis=(1, 2))
    assert np.all(areas < 96 * 80)
    # min_area: a share just above the largest mask leaves nothing, just below keeps that mask.
    share = areas.max() / (96 * 80)
    none = make_proposer({**SAM_FAST, "weights": str(tiny_mobile_sam), "min_area": share + 1e-4})(img)
    assert none[0].shape == (0, 96, 80) and none[1].shape == (0,)
    some, _ = make_proposer({**SAM_FAST, "weights": str(tiny_mobile_sam), "min_area": share - 1e-4})(img)
    assert len(some) >= 1 and (some.sum(axis=(1, 2)) >= share * 96 * 80 - 1).all()
    # De-duplication: with max_iou 0 every mask overlaps (IoU >= 0) the best one, so one is left.
    (best,), (score,) = make_proposer({**SAM_FAST, "weights": str(tiny_mobile_sam), "max_iou": 0.0, "min_area": 0.0})(img)
    assert score == scores.max()
    rles = [mask_utils_encode(m) for m in masks]
    iou = mask_iou(rles, rles)
    assert (iou[~np.eye(len(masks), dtype=bool)] < 0.9).all(), "kept masks are distinct"


def mask_utils_encode(m: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def test_sam_take_tables_and_weights_errors(tmp_path, tiny_mobile_sam, monkeypatch):
    from omama.weights import PACKAGED, WeightsError

    root, ann = synthetic_take(tmp_path / "frames", n_frames=1)
    out, rec = tmp_path / "p.parquet", tmp_path / "r.parquet"
    propose(root, out, rec, **{**SAM_FAST, "weights": str(tiny_mobile_sam), "min_area": 0.0})
    (ps,) = load_proposals(out).values()
    assert len(ps) >= 1 and ps.masks().shape[1:] == (128, 128) and pd.read_parquet(out).attrs["proposer"] == "sam"
    assert len(pd.read_parquet(rec)) > 0
    missing = tmp_path / "weights" / "sam_b.pt"
    with pytest.raises(WeightsError, match=f"weights file not found: {missing}"):
        make_proposer({"kind": "sam", "weights": str(missing)})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(
        WeightsError, match=f"mobile_sam.pt \\(SHA-256 {PACKAGED['mobile_sam.pt'].sha256}\\).*proposer_weights"
    ):
        make_proposer({"kind": "sam"})  # the default weights, not fetched into this cache
    odd = tmp_path / "my-checkpoint.pt"
    odd.write_bytes(tiny_mobile_sam.read_bytes())
    with pytest.raises(ValueError, match=f"SAM weights {odd}: .*must end with one of .*'mobile_sam.pt'"):
        make_proposer({"kind": "sam", "weights": str(odd)})


@pytest.mark.slow
def test_real_mobile_sam_masks_are_deduplicated_by_mask_iou(mobile_sam_home, monkeypatch):
    """The real MobileSAM (fetched into the cache, found by name) on a photograph: overlapping masks
    come out with max_iou 1; max_iou 0.5 keeps the best of each overlapping group and nothing else."""
    import skimage.data

    home, _ = mobile_sam_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    img = cv2.resize(skimage.data.coffee(), (160, 120), interpolation=cv2.INTER_AREA)
    cfg = {"kind": "sam", "imgsz": 512, "points_per_side": 8, "pred_iou": 0.5, "stability": 0.8}
    masks, scores = make_proposer({**cfg, "max_iou": 1.0})(img)
    kept, kept_scores = make_proposer({**cfg, "max_iou": 0.5})(img)
    rles = [mask_utils_encode(m) for m in masks]
    iou = mask_iou(rles, rles)
    assert len(masks) >= 5 and (iou[np.triu_indices(len(masks), 1)] >= 0.5).any(), "some SAM masks overlap"
    expected = distinct(np.lexsort((-masks.sum(axis=(1, 2)), -scores)), iou, 0.5)
    assert 0 < len(kept) == len(expected) < len(masks)
    np.testing.assert_array_equal(kept, masks[expected])
    np.testing.assert_array_equal(kept_scores, scores[expected])
    assert kept_scores.max() == scores.max() and kept.shape[1:] == (120, 160)


@pytest.mark.slow
def test_sam_proposer_weights_are_fetched_before_its_proposals(tmp_path):
    """Dry run with a sam proposer: the proposer_weights job comes first and every proposals job reads its record."""
    import re

    from conftest import run_snakemake, tiny_config

    from omama.layout import Layout

    cfg = tiny_config()
    cfg["proposers"] = {"mobile-sam": {"kind": "sam"}}
    for e in cfg["experiments"].values():
        e["proposer"] = "mobile-sam"
    r = Layout("results")
    d = r.data("tabletop")
    run_snakemake(tmp_path, cfg, d.index())  # the checkpoint, so the plan shows every take
    takes = [t["take_uid"] for t in json.loads((tmp_path / d.index()).read_text())]
    targets = [d.proposals("mobile-sam", t) for t in takes] + [d.exo_proposals("mobile-sam", takes[0])]
    plan = run_snakemake(tmp_path, cfg, *targets, "-n").stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", plan, re.M)
    rules = [r for r, _ in jobs]
    assert rules.count("proposer_weights") == 1 and rules.count("proposals") == len(takes) and "exo_proposals" in rules
    first = rules.index("proposer_weights")
    assert first < min(i for i, r in enumerate(rules) if r.endswith("proposals")), rules
    for rule, body in jobs:
        if rule.endswith("proposals"):
            assert r.proposer_weights("mobile-sam") in body, body


def test_preflight_names_a_missing_sam_checkpoint(tmp_path):
    from omama.config import entry
    from omama.registry import PROPOSERS

    proposer_problems = lambda name, cfg: PROPOSERS.get(cfg["kind"]).problems(name, cfg)  # as preflight asks each kind
    assert proposer_problems("m", entry("proposers", {"kind": "sam"})) == [], "mobile_sam.pt is fetched by its stage"
    path = tmp_path / "sam_b.pt"
    (problem,) = proposer_problems("m", entry("proposers", {"kind": "sam", "weights": str(path)}))
    assert f"proposers.m.weights '{path}' does not exist" in problem and "proposer_weights" in problem
    path.write_bytes(b"a checkpoint")
    assert proposer_problems("m", entry("proposers", {"kind": "sam", "weights": str(path)})) == []
