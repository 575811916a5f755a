"""A photos dataset: user photo pairs (any size, EXIF orientation, absent objects) as one-frame takes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omama.data.masks import decode_rle
from omama.data.photos import PhotoPairError, convert_pair, list_pairs, write_index
from omama.layout import Layout

ORIENTATION = 0x0112


def save_mask(path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def scene(h: int, w: int, boxes: list[tuple[int, int, int, int]], seed: int) -> np.ndarray:
    """A textured background with solid coloured boxes (y, x, h, w) on it."""
    rng = np.random.default_rng(seed)
    img = (rng.integers(90, 140, (h, w, 3))).astype(np.uint8)
    for i, (y, x, bh, bw) in enumerate(boxes):
        img[y : y + bh, x : x + bw] = [(220, 40, 40), (40, 60, 220), (40, 200, 60)][i % 3]
    return img


def box(h: int, w: int, y: int, x: int, bh: int, bw: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y : y + bh, x : x + bw] = True
    return m


def make_photo_pairs(root) -> None:
    """Three pairs: landscape jpg/png; a portrait ego photo stored sideways with an EXIF rotation;
    one whose second object is absent in ego (no ego png) and one with an all-zero ego png."""
    # pair "kitchen": exo 72x128 jpg, ego 96x96 png, two objects both visible.
    d = root / "kitchen"
    b_exo = [(10, 20, 20, 24), (40, 80, 18, 30)]
    b_ego = [(20, 10, 30, 30), (50, 50, 30, 36)]
    d.mkdir(parents=True)
    Image.fromarray(scene(72, 128, b_exo, 0)).save(d / "exo.jpg", quality=95)
    Image.fromarray(scene(96, 96, b_ego, 1)).save(d / "ego.png")
    for i, obj in enumerate(["mug_0", "plate_1"]):
        save_mask(d / "masks" / f"{obj}.exo.png", box(72, 128, *b_exo[i]))
        save_mask(d / "masks" / f"{obj}.ego.png", box(96, 96, *b_ego[i]))
    # pair "portrait": the ego photo is displayed 112 tall x 64 wide, stored 64x112 (HxW) with
    # EXIF orientation 6 (rotate 90 degrees clockwise to display); masks are drawn as displayed.
    d = root / "portrait"
    d.mkdir()
    b_exo = [(12, 30, 24, 30)]
    b_ego = [(60, 8, 40, 40)]
    Image.fromarray(scene(72, 128, b_exo, 2)).save(d / "exo.png")
    shown = scene(112, 64, b_ego, 3)
    stored = Image.fromarray(np.rot90(shown, k=1).copy())  # undone by EXIF orientation 6
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored.save(d / "ego.jpg", quality=95, exif=exif.tobytes())
    save_mask(d / "masks" / "bottle_0.exo.png", box(72, 128, *b_exo[0]))
    save_mask(d / "masks" / "bottle_0.ego.png", box(112, 64, *b_ego[0]))
    # pair "absent": "key_0" has no ego mask, "pen_1" an all-zero one; "cup_2" is visible.
    d = root / "absent"
    d.mkdir()
    b_exo = [(10, 10, 16, 16), (30, 60, 12, 40), (44, 90, 20, 24)]
    Image.fromarray(scene(72, 128, b_exo, 4)).save(d / "exo.jpg", quality=95)
    Image.fromarray(scene(80, 80, [(30, 30, 24, 24)], 5)).save(d / "ego.jpg", quality=95)
    for i, obj in enumerate(["key_0", "pen_1", "cup_2"]):
        save_mask(d / "masks" / f"{obj}.exo.png", box(72, 128, *b_exo[i]))
    save_mask(d / "masks" / "pen_1.ego.png", np.zeros((80, 80), bool))
    save_mask(d / "masks" / "cup_2.ego.png", box(80, 80, 30, 30, 24, 24))


def test_portrait_photo_is_turned_upright_and_its_mask_kept(tmp_path):
    make_photo_pairs(tmp_path / "photos")
    ann = convert_pair(
        pair_dir=tmp_path / "photos" / "portrait",
        annotation_out=tmp_path / "out" / "annotation.json",
        images_out=tmp_path / "out" / "images",
    )
    assert ann["native_size"] == {"aria_ego": [112, 64], "exo": [72, 128]}
    ego = np.asarray(Image.open(tmp_path / "out" / "images" / "aria_ego" / "0.jpg"))
    assert ego.shape == (112, 64, 3)
    mask = decode_rle(ann["masks"]["bottle_0"]["aria_ego"]["0"])
    assert mask.shape == (112, 64) and mask.sum() == 40 * 40
    # the red box sits under the mask once the photo is upright
    assert ego[mask][:, 0].mean() > 180 and ego[mask][:, 2].mean() < 90
    assert json.loads((tmp_path / "out" / "annotation.json").read_text()) == ann


def test_absent_objects_have_no_ego_mask_but_are_annotated(tmp_path):
    make_photo_pairs(tmp_path / "photos")
    ann = convert_pair(
        pair_dir=tmp_path / "photos" / "absent", annotation_out=tmp_path / "a.json", images_out=tmp_path / "img"
    )
    assert set(ann["masks"]) == {"key_0", "pen_1", "cup_2"}
    assert "aria_ego" not in ann["masks"]["key_0"] and "aria_ego" not in ann["masks"]["pen_1"]
    assert "aria_ego" in ann["masks"]["cup_2"]
    assert all(ann["annotated_frames"][o] == {"aria_ego": [0], "exo": [0]} for o in ann["masks"])


def test_mask_of_the_wrong_size_names_pair_object_and_view(tmp_path):
    make_photo_pairs(tmp_path / "photos")
    # a mask drawn on the stored (sideways) photo instead of the displayed one
    save_mask(tmp_path / "photos" / "portrait" / "masks" / "bottle_0.ego.png", np.ones((64, 112), bool))
    with pytest.raises(PhotoPairError, match=r"pair 'portrait', object 'bottle_0', view 'ego'.*EXIF"):
        convert_pair(
            pair_dir=tmp_path / "photos" / "portrait", annotation_out=tmp_path / "a.json", images_out=tmp_path / "img"
        )


def test_pair_without_ego_photo_is_a_clear_error(tmp_path):
    make_photo_pairs(tmp_path / "photos")
    (tmp_path / "photos" / "kitchen" / "ego.png").unlink()
    with pytest.raises(PhotoPairError, match=r"pair 'kitchen', view 'ego': no ego image"):
        list_pairs(tmp_path / "photos")


def test_ego_mask_without_exo_mask_is_counted_as_skipped(tmp_path):
    make_photo_pairs(tmp_path / "photos")
    save_mask(tmp_path / "photos" / "kitchen" / "masks" / "spoon_2.ego.png", box(96, 96, 0, 0, 8, 8))
    ann = convert_pair(
        pair_dir=tmp_path / "photos" / "kitchen", annotation_out=tmp_path / "a.json", images_out=tmp_path / "img"
    )
    assert "spoon_2" not in ann["masks"]
    assert ann["skipped"] == [{"object": "spoon_2", "camera": "exo", "frame": 0, "reason": "no exo mask"}]
    assert write_index(folder=tmp_path / "photos", out_takes=tmp_path / "takes.json") == ["absent", "kitchen", "portrait"]


@pytest.mark.slow
def test_generated_photo_pairs_run_through_the_pipeline(tiny_run):
    """Pair 0 has a portrait exo photo, pair 1 an EXIF-rotated exo photo and objects absent in ego."""
    r = Layout(str(tiny_run / "results"))
    d = r.data("photos")  # the tiny config's photos dataset (generated pairs), in both experiments' evaluate_on
    anns = {p: json.loads(open(d.annotation(p)).read()) for p in ("pair_000", "pair_001")}
    h, w = anns["pair_000"]["native_size"]["exo"]
    assert h > w  # portrait, as displayed
    for p, ann in anns.items():
        exo = Image.open(d.image(p, "exo", 0))
        assert [exo.height, exo.width] == ann["native_size"]["exo"]
        assert all(decode_rle(m["exo"]["0"]).shape == (exo.height, exo.width) for m in ann["masks"].values())
    for e in ("untrained", "trained-frame"):
        metrics = json.loads(open(r.result("metrics.json", e, "photos", "test")).read())
        assert metrics["protocol"] == "official challenge evaluator"
        samples = pd.read_parquet(r.result("samples.parquet", e, "photos", "test"))
        expected = {(p, o) for p, ann in anns.items() for o in ann["masks"]}
        assert set(zip(samples.take_uid, samples.object)) == expected
        absent = {(p, o) for p, ann in anns.items() for o, m in ann["masks"].items() if "aria_ego" not in m}
        assert absent and set(zip(samples.take_uid[~samples.ego_present], samples.object[~samples.ego_present])) == absent
        assert metrics["n_total"] == len(samples) and metrics["n_present"] == int(samples.ego_present.sum())
        assert samples.loc[samples.ego_present, "iou"].between(0, 1).all()


@pytest.mark.slow
def test_editing_a_user_mask_re_converts_its_pair(tmp_path):
    """A mask edited inside a pair folder changes neither the photo folder's nor the pair
    folder's time: the pair's own files must be inputs of its conversion."""
    from conftest import run_snakemake, tiny_config

    make_photo_pairs(tmp_path / "photos")
    cfg = tiny_config()
    cfg["datasets"]["photos"] = {"kind": "photos", "path": str(tmp_path / "photos")}  # the user's pairs
    target = Layout("results").data("photos").annotation("kitchen")
    run_snakemake(tmp_path / "run", cfg, target)
    assert "Nothing to be done" in run_snakemake(tmp_path / "run", cfg, target, "-n").stdout
    save_mask(tmp_path / "photos" / "kitchen" / "masks" / "mug_0.exo.png", box(72, 128, 5, 5, 30, 30))
    plan = run_snakemake(tmp_path / "run", cfg, target, "-n").stdout
    assert "rule extract" in plan and "dataset=photos, take=kitchen" in plan and "Updated input files" in plan, plan[-3000:]
    run_snakemake(tmp_path / "run", cfg, target)
    ann = json.loads((tmp_path / "run" / target).read_text())
    assert decode_rle(ann["masks"]["mug_0"]["exo"]["0"]).sum() == 30 * 30
