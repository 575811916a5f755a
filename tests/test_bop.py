"""BOP scenewise datasets as takes of image pairs (omama.data.bop) and the synthetic BOP writer (omama.synthetic.bop)."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from omama.data import bop
from omama.data.masks import decode_rle
from omama.data.pairs import take_pairs
from omama.synthetic.bop import SyntheticScene, write_dataset

H, W = 12, 16


def box(y: int, x: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y : y + h, x : x + w] = True
    return m


EMPTY = np.zeros((H, W), bool)


def write_scene(root, images: dict, *, split="test", scene="000001", gray=False, suffix=".png"):
    """A hand-built BOP scene: ``images`` {im_id: [(obj_id, visible mask, visib_fract), ...]}; the image of
    ``im`` is a seeded random picture (single-channel under gray/ with ``gray``)."""
    d = root / split / scene
    (d / ("gray" if gray else "rgb")).mkdir(parents=True)
    (d / "mask_visib").mkdir()
    scene_gt, info, camera = {}, {}, {}
    for im, objects in images.items():
        rng = np.random.default_rng(im)
        pixels = rng.integers(0, 256, (H, W) if gray else (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(d / ("gray" if gray else "rgb") / f"{im:06d}{suffix}")
        scene_gt[str(im)], info[str(im)] = [], []
        for gt, (obj_id, mask, visib) in enumerate(objects):
            Image.fromarray(mask.astype(np.uint8) * 255).save(d / "mask_visib" / f"{im:06d}_{gt:06d}.png")
            scene_gt[str(im)].append({"obj_id": obj_id, "cam_R_m2c": [1, 0, 0, 0, 1, 0, 0, 0, 1], "cam_t_m2c": [0, 0, 500]})
            n = int(mask.sum())
            info[str(im)].append(
                {
                    "bbox_obj": [0, 0, 1, 1],
                    "bbox_visib": [0, 0, 1, 1],
                    "px_count_all": n,
                    "px_count_valid": n,
                    "px_count_visib": n,
                    "visib_fract": visib,
                }
            )
        camera[str(im)] = {"cam_K": [20, 0, 7.5, 0, 20, 5.5, 0, 0, 1], "depth_scale": 1.0}
    for name, data in (("scene_gt", scene_gt), ("scene_gt_info", info), ("scene_camera", camera)):
        (d / f"{name}.json").write_text(json.dumps(data))
    return d


def convert(root, tmp_path, scene="000001", split="test", **cfg):
    record = bop.scene_record(root, split, scene, cfg)
    ann = bop.convert_scene(
        record=record,
        root=root,
        annotation_out=tmp_path / "out" / "annotation.json",
        images_out=tmp_path / "out" / "images",
        jpeg_quality=95,
    )
    return record, ann


def present(ann: dict, obj: str, cam: str) -> list[int]:
    return sorted(int(f) for f in ann["masks"][obj][cam])


# ---------------------------------------------------------------- masks, presence, naming


def scene_with_absences(root):
    """Four images. obj 1 visible everywhere; obj 2 only in image 0 (later an empty mask with visib_fract 0);
    obj 3 a non-empty mask with visib_fract 0.05 in image 2; obj 5 twice (two instances); image 3 has
    no obj 5 in its list at all."""
    a, b, c = box(1, 1, 4, 5), box(6, 8, 5, 6), box(2, 10, 3, 3)
    images = {
        0: [(1, a, 1.0), (2, b, 0.8), (5, c, 0.9), (5, box(8, 1, 3, 3), 0.7)],
        1: [(1, box(2, 2, 4, 5), 1.0), (2, EMPTY, 0.0), (5, c, 0.9), (5, box(8, 2, 3, 3), 0.7)],
        2: [(1, a, 0.6), (2, EMPTY, 0.0), (3, box(0, 0, 2, 2), 0.05), (5, c, 1.0), (5, EMPTY, 0.0)],
        3: [(1, a, 1.0), (2, EMPTY, 0.0)],
    }
    write_scene(root, images)
    return images


def test_masks_and_presence_per_view(tmp_path):
    images = scene_with_absences(tmp_path / "ds")
    record, ann = convert(tmp_path / "ds", tmp_path, gap=1)
    assert record["pairs"] == [[0, 1], [1, 2], [2, 3]] and record["frames"] == [0, 1, 2]
    assert record["take_uid"] == "test_000001" and record["scenario"] == "ds" and record["annotation_split"] == "test"
    assert ann["ego_cam"] == "aria_a" and ann["exo_cams"] == ["view_b"] and ann["native_size"]["aria_a"] == [H, W]
    objects = ["obj_000001_0", "obj_000002_0", "obj_000003_0", "obj_000005_0", "obj_000005_1"]
    assert sorted(ann["masks"]) == objects == record["objects"]
    # frame f: aria_a shows image f, view_b image f + 1
    assert present(ann, "obj_000001_0", "aria_a") == [0, 1, 2] and present(ann, "obj_000001_0", "view_b") == [0, 1, 2]
    assert present(ann, "obj_000002_0", "aria_a") == [0] and present(ann, "obj_000002_0", "view_b") == []
    assert present(ann, "obj_000003_0", "aria_a") == [2] and present(ann, "obj_000003_0", "view_b") == [1]
    assert present(ann, "obj_000005_1", "aria_a") == [0, 1] and present(ann, "obj_000005_1", "view_b") == [0]
    # the masks are the files' pixels, each instance its own
    assert np.array_equal(decode_rle(ann["masks"]["obj_000005_1"]["aria_a"]["1"]), images[1][3][1])
    assert np.array_equal(decode_rle(ann["masks"]["obj_000001_0"]["view_b"]["0"]), images[1][0][1])
    # every object keeps both camera keys and is annotated in both views at every frame
    for obj in objects:
        assert set(ann["masks"][obj]) == {"aria_a", "view_b"}
        assert ann["annotated_frames"][obj] == {"aria_a": [0, 1, 2], "view_b": [0, 1, 2]}
    assert ann["absent"] == {
        bop.ABSENT["unlisted"]: 6,  # obj 3 in images 0, 1 (two views) and 3; obj 5_0 and 5_1 in image 3
        bop.ABSENT["empty"]: 7,  # obj 2 in images 1, 2 (two views each) and 3; obj 5_1 in image 2 (two views)
    }
    assert ann["skipped"] == [] and record["skipped"] == {}


def test_min_visib_fract_makes_a_visible_instance_absent(tmp_path):
    scene_with_absences(tmp_path / "ds")
    _, ann = convert(tmp_path / "ds", tmp_path, gap=1, min_visib_fract=0.7)
    assert present(ann, "obj_000003_0", "aria_a") == [] and present(ann, "obj_000003_0", "view_b") == []
    assert present(ann, "obj_000001_0", "aria_a") == [0, 1]  # visib_fract 0.6 in image 2
    assert present(ann, "obj_000005_1", "aria_a") == [0, 1]  # 0.7 on the threshold: present (>=)
    assert ann["absent"][bop.ABSENT["visib"]] == 4  # obj 3 twice, obj 1 twice in image 2


def test_pairs_rows_both_directions_follow_presence(tmp_path):
    scene_with_absences(tmp_path / "ds")
    _, ann = convert(tmp_path / "ds", tmp_path, gap=1)
    rows, left_out = take_pairs(ann, "test", direction="exo2ego")
    got = {(r["object"], r["frame"]): r["ego_present"] for r in rows}
    # sources: view_b masks; destination: aria_a
    assert got == {
        ("obj_000001_0", 0): True,
        ("obj_000001_0", 1): True,
        ("obj_000001_0", 2): True,
        ("obj_000003_0", 1): False,
        ("obj_000005_0", 0): True,
        ("obj_000005_0", 1): True,
        ("obj_000005_1", 0): True,
    }
    assert all(r["label"] == r["object"][:-2] for r in rows) and sum(left_out.values()) == 0
    rows, _ = take_pairs(ann, "test", direction="ego2exo")
    got = {(r["object"], r["frame"]): r["exo_present"] for r in rows}
    assert got[("obj_000002_0", 0)] is False and got[("obj_000003_0", 2)] is False and got[("obj_000005_1", 1)] is False
    assert len(rows) == 10  # aria_a masks: obj 1 x3, obj 2, obj 3, obj 5_0 x3, obj 5_1 x2


def test_labels_name_the_objects(tmp_path):
    scene_with_absences(tmp_path / "ds")
    _, ann = convert(tmp_path / "ds", tmp_path, gap=1, labels={"5": "mug", 1: "drill"})
    assert sorted(ann["masks"]) == ["drill_0", "mug_0", "mug_1", "obj_000002_0", "obj_000003_0"]
    rows, _ = take_pairs(ann, "test")
    assert {r["label"] for r in rows} == {"drill", "mug", "obj_000003"}
    with pytest.raises(ValueError, match="its own name"):
        bop.settings({"labels": {1: "mug", 5: "mug"}})


# ---------------------------------------------------------------- pairing rule


def test_pairing_rule_gap_stride_max_pairs():
    ids = [3, 7, 8, 20, 21, 30, 31]
    assert bop.pair_images(ids, gap=2, stride=1, max_pairs=None) == [(3, 8), (7, 20), (8, 21), (20, 30), (21, 31)]
    assert bop.pair_images(ids, gap=2, stride=2, max_pairs=None) == [(3, 8), (8, 21), (21, 31)]
    assert bop.pair_images(ids, gap=2, stride=1, max_pairs=3) == [(3, 8), (8, 21), (21, 31)]
    assert bop.pair_images(ids, gap=2, stride=1, max_pairs=1) == [(3, 8)]
    assert bop.pair_images(ids, gap=6, stride=1, max_pairs=None) == [(3, 31)]
    assert bop.pair_images(ids, gap=7, stride=1, max_pairs=None) == []
    assert bop.settings()["gap"] == 100 and bop.settings()["stride"] == 1  # HANDAL-X's rule
    with pytest.raises(ValueError, match=r"at datasets entry.gap: 0 is less than the minimum of 1"):
        bop.settings({"gap": 0})
    with pytest.raises(ValueError, match=r"'gaps' was unexpected"):
        bop.settings({"gaps": 3})


def test_scene_pairs_follow_sorted_image_ids_and_count_the_rest(tmp_path):
    write_scene(tmp_path / "ds", {im: [(1, box(1, 1, 3, 3), 1.0)] for im in (21, 3, 8, 7, 20)})
    d = tmp_path / "ds" / "test" / "000001"
    (d / "rgb" / "000099.png").write_bytes((d / "rgb" / "000003.png").read_bytes())  # an image scene_gt.json does not list
    assert bop.scene_pairs(d, gap=2, stride=1, max_pairs=None) == [(3, 8), (7, 20), (8, 21)]
    record = bop.scene_record(tmp_path / "ds", "test", "000001", {"gap": 2, "stride": 2})
    assert record["pairs"] == [[3, 8], [8, 21]]
    assert record["skipped"] == {bop.UNPAIRED: 2, bop.UNLISTED: 1}  # images 7 and 20 in no pair
    short = bop.scene_record(tmp_path / "ds", "test", "000001", {"gap": 5})
    assert short["frames"] == [] and short["skipped"] == {bop.UNPAIRED: 5, bop.UNLISTED: 1}
    with pytest.raises(bop.BopError, match="no image pairs"):
        bop.convert_scene(
            record=short, root=tmp_path / "ds", annotation_out=tmp_path / "a.json", images_out=tmp_path / "i", jpeg_quality=90
        )


# ---------------------------------------------------------------- errors and odd scenes


def test_missing_mask_file_is_an_error_naming_it(tmp_path):
    scene_with_absences(tmp_path / "ds")
    missing = tmp_path / "ds" / "test" / "000001" / "mask_visib" / "000002_000003.png"
    missing.unlink()
    with pytest.raises(bop.BopError) as e:
        convert(tmp_path / "ds", tmp_path, gap=1)
    assert str(missing) in str(e.value) and "scene '000001', image 2, gt 3" in str(e.value)
    assert not (tmp_path / "out" / "annotation.json").exists() and not (tmp_path / "out" / "images").exists()


def test_missing_image_file_is_an_error_naming_scene_and_image(tmp_path):
    scene_with_absences(tmp_path / "ds")
    (tmp_path / "ds" / "test" / "000001" / "rgb" / "000002.png").unlink()
    with pytest.raises(bop.BopError, match=r"missing image file for scene '000001', image 2"):
        bop.scene_record(tmp_path / "ds", "test", "000001", {"gap": 1})


def test_image_without_objects_is_a_frame_where_no_object_is(tmp_path):
    write_scene(tmp_path / "ds", {0: [(4, box(2, 2, 5, 5), 1.0)], 1: [], 2: [(4, box(3, 3, 5, 5), 1.0)]})
    record, ann = convert(tmp_path / "ds", tmp_path, gap=1)
    assert record["images_without_objects"] == 1
    assert present(ann, "obj_000004_0", "aria_a") == [0] and present(ann, "obj_000004_0", "view_b") == [1]
    assert ann["absent"] == {bop.ABSENT["unlisted"]: 2}
    assert ann["annotated_frames"]["obj_000004_0"] == {"aria_a": [0, 1], "view_b": [0, 1]}
    assert (tmp_path / "out" / "images" / "view_b" / "0.jpg").is_file()


@pytest.mark.parametrize(
    "scene_gt, match",
    [
        ([{"obj_id": 1}], r"scene_gt\.json \(scene '000001'\): expected a JSON object"),
        (
            {"0": [{"cam_t_m2c": [0, 0, 1]}], "1": [{"obj_id": 1}]},
            r"scene_gt\.json \(scene '000001', image 0, gt 0\): annotation without a numeric 'obj_id'",
        ),
        (
            {"0": [{"obj_id": 1}, {"obj_id": 2}], "1": [{"obj_id": 1}]},
            r"lists 2 annotations but .*scene_gt_info\.json 1 for scene '000001', image 0",
        ),
        ({"zero": [], "1": []}, r"image id 'zero' is not an integer"),
    ],
)
def test_malformed_scene_gt_names_the_file(tmp_path, scene_gt, match):
    write_scene(tmp_path / "ds", {0: [(1, box(1, 1, 3, 3), 1.0)], 1: [(1, box(1, 1, 3, 3), 1.0)]})
    path = tmp_path / "ds" / "test" / "000001" / "scene_gt.json"
    path.write_text(json.dumps(scene_gt))
    with pytest.raises(bop.BopError, match=match) as e:
        bop.scene_record(tmp_path / "ds", "test", "000001", {"gap": 1})
    assert "scene_gt" in str(e.value) and str(path.parent) in str(e.value)


def test_grayscale_images_become_three_channels(tmp_path):
    write_scene(tmp_path / "ds", {0: [(1, box(1, 1, 3, 3), 1.0)], 1: [(1, box(2, 2, 3, 3), 1.0)]}, gray=True)
    _, ann = convert(tmp_path / "ds", tmp_path, gap=1)
    out = cv2.imread(str(tmp_path / "out" / "images" / "aria_a" / "0.jpg"), cv2.IMREAD_UNCHANGED)
    source = np.asarray(Image.open(tmp_path / "ds" / "test" / "000001" / "gray" / "000000.png"))
    assert out.shape == (H, W, 3) and source.shape == (H, W)
    assert np.abs(out.astype(int) - source[..., None]).mean() < 12  # the grey value in every channel (JPEG)
    assert present(ann, "obj_000001_0", "view_b") == [0]


def test_list_scenes_needs_scene_gt(tmp_path):
    write_scene(tmp_path / "ds", {0: [], 1: []}, scene="000002")
    write_scene(tmp_path / "ds", {0: [], 1: []}, scene="000001")
    assert bop.list_scenes(tmp_path / "ds", "test") == ["000001", "000002"]
    (tmp_path / "ds" / "test" / "000003").mkdir()
    with pytest.raises(bop.BopError, match="scene '000003' has no scene_gt.json"):
        bop.list_scenes(tmp_path / "ds", "test")


# ---------------------------------------------------------------- synthetic writer, round trip

SYNTH = {"scenes": 2, "images": 6, "image_size": 64, "objects": 4, "seed": 1}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("bop") / "synthbop"
    write_dataset(root, SYNTH)
    return root


def digest(root) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_synthetic_writer_is_byte_identical_and_bop_shaped(synthetic, tmp_path):
    again = write_dataset(tmp_path / "again", SYNTH)
    assert digest(synthetic) == digest(again)
    assert digest(write_dataset(tmp_path / "other", {**SYNTH, "seed": 2})) != digest(synthetic)
    assert bop.list_scenes(synthetic, "test") == ["000000", "000001"]
    d = synthetic / "test" / "000000"
    assert sorted(p.name for p in (d / "rgb").iterdir()) == [f"{im:06d}.png" for im in range(6)]
    camera = json.loads((synthetic / "camera.json").read_text())
    assert camera["width"] == camera["height"] == 64 and camera["cx"] == 31.5
    models = json.loads((synthetic / "models" / "models_info.json").read_text())
    scene_gt = json.loads((d / "scene_gt.json").read_text())
    info = json.loads((d / "scene_gt_info.json").read_text())
    ids = [e["obj_id"] for e in scene_gt["0"]]
    cut_by_border = 0
    assert len(ids) == 4 and ids.count(ids[0]) == 2  # scene 0 holds two bowls: one obj_id twice
    assert {str(i) for i in ids} <= set(models)
    for im in scene_gt:
        for gt, (e, i) in enumerate(zip(scene_gt[im], info[im])):
            visib = np.asarray(Image.open(d / "mask_visib" / f"{int(im):06d}_{gt:06d}.png")) > 0
            whole = np.asarray(Image.open(d / "mask" / f"{int(im):06d}_{gt:06d}.png")) > 0
            assert i["px_count_visib"] == visib.sum() and i["px_count_valid"] == whole.sum() and not (visib & ~whole).any()
            assert i["px_count_all"] >= i["px_count_valid"] and i["visib_fract"] == (
                i["px_count_visib"] / i["px_count_all"] if i["px_count_all"] else 0
            )
            assert (i["bbox_visib"] == [-1, -1, -1, -1]) == (not visib.any()) == (i["bbox_obj"] == [-1, -1, -1, -1])
            if visib.any():  # px_count_all also counts the silhouette outside the image (BOP's larger canvas)
                x, y, bw, bh = i["bbox_obj"]
                inside = x >= 0 and y >= 0 and x + bw < 64 and y + bh < 64
                assert (i["px_count_all"] == i["px_count_valid"]) == inside, (im, gt, i)
                cut_by_border += not inside
            if visib.any():  # the model's 3D box projected with the pose and K encloses the visible mask
                m, k = (
                    models[str(e["obj_id"])],
                    np.array(json.loads((d / "scene_camera.json").read_text())[im]["cam_K"]).reshape(3, 3),
                )
                corners = np.array(
                    [[m[f"min_{a}"] + s * m[f"size_{a}"] for a, s in zip("xyz", c)] for c in np.ndindex(2, 2, 2)]
                )
                p = k @ (np.array(e["cam_R_m2c"]).reshape(3, 3) @ corners.T + np.array(e["cam_t_m2c"])[:, None])
                u, v = p[:2] / p[2]
                x, y, bw, bh = i["bbox_visib"]
                assert u.min() - 1 <= x and x + bw <= u.max() + 1 and v.min() - 1 <= y and y + bh <= v.max() + 1
    assert cut_by_border
    fractions = [
        i["visib_fract"]
        for s in ("000000", "000001")
        for per_im in json.loads((synthetic / "test" / s / "scene_gt_info.json").read_text()).values()
        for i in per_im
    ]
    assert (
        min(fractions) == 0 and any(0 < f < 0.9 for f in fractions) and max(fractions) == 1
    )  # absent, occluded or cut, whole


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_round_trip_masks_and_presence(synthetic, tmp_path, threshold):
    views = {"aria_a": 0, "view_b": 1}
    destination_present = []
    for index, scene in enumerate(bop.list_scenes(synthetic, "test")):
        record, ann = convert(synthetic, tmp_path / scene, scene=scene, gap=2, min_visib_fract=threshold)
        assert record["pairs"] == [[0, 2], [1, 3], [2, 4], [3, 5]]
        rendered = SyntheticScene(SYNTH, index)
        info = json.loads((synthetic / "test" / scene / "scene_gt_info.json").read_text())
        for frame, pair in enumerate(record["pairs"]):
            for cam, side in views.items():
                im = pair[side]
                view = rendered.render(im)
                names = bop.instance_names(rendered.obj_ids, {})
                for gt, name in enumerate(names):
                    visib_fract = info[str(im)][gt]["visib_fract"]
                    is_present = visib_fract > 0 and visib_fract >= threshold
                    assert (str(frame) in ann["masks"][name][cam]) == is_present, (scene, frame, cam, name, visib_fract)
                    if is_present:
                        assert np.array_equal(decode_rle(ann["masks"][name][cam][str(frame)]), view.visible[gt])
        rows = {d: take_pairs(ann, "test", direction=d)[0] for d in ("exo2ego", "ego2exo")}
        for direction, src, dst, flag in (
            ("exo2ego", "view_b", "aria_a", "ego_present"),
            ("ego2exo", "aria_a", "view_b", "exo_present"),
        ):
            expected = {(o, int(f)): f in ann["masks"][o][dst] for o in ann["masks"] for f in ann["masks"][o][src]}
            assert {(r["object"], r["frame"]): r[flag] for r in rows[direction]} == expected
            destination_present += [r[flag] for r in rows[direction]]
    assert True in destination_present and False in destination_present  # both outcomes occur
