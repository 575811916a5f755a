"""The benchmark's own protocol: relations_test.json, the official take split, predict-only test takes
(destination masks withheld), the challenge submission file, withheld and missing takes, and the
training-free cosine matcher."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_snakemake, tiny_config
from data_fixtures import FRAMES, SELECTION

from omama.data.extract import extract_take
from omama.data.pairs import write_pairs
from omama.data.splits import split_pairs, write_split
from omama.data.takes import EXCLUDED, MISSING_LOCALLY, build_index
from omama.evaluation.metrics import evaluate, score_direction
from omama.evaluation.submission import build_submission
from omama.layout import Layout
from omama.model.descriptors import describe
from omama.model.head import CosineMatcher, candidate_embeddings
from omama.synthetic.dataset import generate_dataset

SYNTHETIC = tiny_config()["datasets"]["tabletop"]["synthetic"] | {
    "takes": 4,
    "seconds": 2,
    "val_fraction": 0.25,
    "test_fraction": 0.25,
}


def make_source(root: Path, **changes) -> Path:
    return generate_dataset(root, SYNTHETIC | changes)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The same tiny takes written three ways: no test file, a test file with every mask, and a test
    file whose ego masks are withheld."""
    base = tmp_path_factory.mktemp("protocol")
    return {
        "none": make_source(base / "none", test_fraction=0.0),
        "full": make_source(base / "full"),
        "withheld": make_source(base / "withheld", withhold_test="ego"),
    }


def relations(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"relations_{split}.json").read_text())["annotations"]


def index_records(source: Path, out: Path, **selection) -> tuple[list[dict], dict]:
    build_index(
        source_root=source,
        selection={**SELECTION, "annotation_splits": ["train", "val", "test"], **selection},
        takes_out=out / "index/takes.json",
        records_dir=out / "index/takes",
        summary_out=out / "index/summary.json",
    )
    lean = json.loads((out / "index/takes.json").read_text())
    return [json.loads((out / "index/takes" / f"{r['take_uid']}.json").read_text()) for r in lean], json.loads(
        (out / "index/summary.json").read_text()
    )


def pairs_of(source: Path, out: Path) -> pd.DataFrame:
    records, _ = index_records(source, out)
    paths = []
    for r in records:
        extract_take(
            record=r,
            raw_root=source,
            annotation_out=out / r["take_uid"] / "annotation.json",
            images_out=out / r["take_uid"] / "images",
            frames_cfg=FRAMES,
        )
        paths.append(str(out / r["take_uid"] / "annotation.json"))
    write_pairs(
        annotation_paths=paths,
        takes_index=out / "index/takes.json",
        pairs_out=out / "pairs.parquet",
        summary_out=out / "pairs.json",
    )
    return pd.read_parquet(out / "pairs.parquet")


def test_synthetic_test_file_takes_its_takes_from_train_and_keeps_val(sources):
    none, full, withheld = sources["none"], sources["full"], sources["withheld"]
    assert relations(none, "test") == {}
    assert relations(full, "val") == relations(none, "val")  # val takes (and their masks) do not move
    test = relations(full, "test")
    assert len(test) == 1 and set(test) <= set(relations(none, "train"))
    assert set(relations(full, "train")) == set(relations(none, "train")) - set(test)
    # withheld: every ego camera entry keeps its annotated frames and has no 'annotation'; exo masks stay
    (uid,) = relations(withheld, "test")
    for per_cam in relations(withheld, "test")[uid]["object_masks"].values():
        for cam, ann in per_cam.items():
            assert ("annotation" in ann) == ("aria" not in cam) and ann["annotated_frames"]
    assert relations(withheld, "test")[uid]["object_masks"].keys() == test[uid]["object_masks"].keys()


def test_official_split_is_the_annotation_file_of_each_take(sources, tmp_path):
    pairs = pairs_of(sources["full"], tmp_path)
    split = split_pairs(pairs, "official", None, None)
    assert len(split) == len(pairs)
    assert (split["split"] == split["annotation_split"]).all()
    assert split.groupby("take_uid")["split"].nunique().max() == 1  # no take in two subsets
    test_takes = set(relations(sources["full"], "test"))
    assert set(split.loc[split["split"] == "test", "take_uid"]) == test_takes
    # a re-drawn strategy over the same pairs moves frames of the test file's takes out of test
    frame = split_pairs(pairs, "frame", [0.7, 0.15, 0.15], 0)
    assert (frame.loc[frame["take_uid"].isin(test_takes), "split"] != "test").any()


def test_withheld_destination_masks_make_predict_only_rows(sources, tmp_path):
    pairs = pairs_of(sources["withheld"], tmp_path)
    (test_take,) = relations(sources["withheld"], "test")
    mine = pairs[pairs["take_uid"] == test_take]
    e2e = mine[mine["direction"] == "exo2ego"]
    assert len(e2e) and not e2e["scored"].any() and not e2e["ego_present"].any()
    assert mine[mine["direction"] == "ego2exo"].empty  # the ego masks are the ego->exo sources: none to match
    assert pairs.loc[pairs["take_uid"] != test_take, "scored"].all()
    summary = json.loads((tmp_path / "pairs.json").read_text())
    assert summary["predict_only"] == len(e2e)
    assert summary["ego2exo"]["skipped"]["source masks withheld in the annotations (object x camera pairs)"] > 0
    # official: the predict-only rows are the test subset; the drawn strategies leave them out, counted
    diag = write_split(
        pairs_path=tmp_path / "pairs.parquet",
        strategy="official",
        ratios=[0.7, 0.15, 0.15],
        seed=0,
        split_out=tmp_path / "official.parquet",
        diagnostics_out=tmp_path / "official.json",
    )
    assert diag["predict_only"]["test"] == len(e2e) and diag["ratios"] is None
    diag = write_split(
        pairs_path=tmp_path / "pairs.parquet",
        strategy="frame",
        ratios=[0.7, 0.15, 0.15],
        seed=0,
        split_out=tmp_path / "frame.parquet",
        diagnostics_out=tmp_path / "frame.json",
    )
    assert test_take not in set(pd.read_parquet(tmp_path / "frame.parquet")["take_uid"])
    assert sum(diag["left_out"].values()) == len(e2e)
    # withheld masks in a training take: official refuses them, naming the take
    bad = pairs.assign(annotation_split=np.where(pairs["take_uid"] == test_take, "train", pairs["annotation_split"]))
    with pytest.raises(ValueError, match=test_take):
        split_pairs(bad, "official", None, None)


def test_a_take_mixing_given_and_withheld_masks_is_an_error_naming_it(sources, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(sources["full"], source)
    ann = json.loads((source / "annotations/relations_test.json").read_text())
    (uid,) = ann["annotations"]
    first = sorted(ann["annotations"][uid]["object_masks"])[0]
    del ann["annotations"][uid]["object_masks"][first]["aria01_214-1"]["annotation"]  # one object's ego masks only
    (source / "annotations/relations_test.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=rf"take '{uid}'.*relations_test.json.*ego camera entries"):
        index_records(source, tmp_path / "out")


def test_excluded_and_locally_missing_takes_are_counted_skips(sources, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(sources["full"], source)
    takes = json.loads((source / "takes.json").read_text())
    a, b = [t for t in takes if t["take_uid"] in relations(source, "train")][:2]
    (source / a["root_dir"] / "frame_aligned_videos/cam02.mp4").unlink()  # a partial local copy: one exo video gone
    records, summary = index_records(source, tmp_path / "out", exclude_takes=[b["take_uid"]])
    uids = {r["take_uid"] for r in records}
    assert a["take_uid"] not in uids and b["take_uid"] not in uids and records
    assert summary["left_out"][MISSING_LOCALLY] == 1 and summary["left_out"][EXCLUDED] == 1
    reasons = {s["take_uid"]: s["reason"] for s in summary["skipped_takes"]}
    assert reasons[a["take_uid"]] == MISSING_LOCALLY and reasons[b["take_uid"]] == EXCLUDED


def submission_block(direction: str, takes: dict) -> dict:
    key = {"exo2ego": "exo-ego", "ego2exo": "ego-exo"}[direction]
    return {key: {"version": "xx", "challenge": "correspondence", "results": takes}}


def official_reader_checks(submission: dict, key: str, gt: dict) -> None:
    """What the official evaluators' readers require of a prediction file before scoring it
    (``validate_predictions`` of evaluate_exoego.py / evaluate_egoexo.py, restated): the direction's
    block, its results holding every ground-truth take with masks and subsample_idx, every object of the
    take, and for every exo camera of an object the camera-pair key with every frame the evaluator
    scores, each with pred_mask and confidence."""
    assert key in submission
    block = submission[key]
    assert "results" in block
    assert len(block["results"]) == len(gt["annotations"])
    for take, ann in gt["annotations"].items():
        res = block["results"][take]
        assert "masks" in res and "subsample_idx" in res
        assert len(res["masks"]) == len(ann["masks"])
        for obj, cams in ann["masks"].items():
            (ego,) = [c for c in cams if "aria" in c]
            for cam in cams:
                if cam == ego:
                    continue
                pair = f"{cam}_{ego}" if key == "exo-ego" else f"{ego}_{cam}"
                src = cams[cam] if key == "exo-ego" else cams[ego]
                dst = ego if key == "exo-ego" else cam
                for frame in src:
                    if int(frame) in ann["annotated_frames"][obj][dst]:
                        entry = res["masks"][obj][pair][frame]
                        assert set(entry) >= {"pred_mask", "confidence"} and set(entry["pred_mask"]) >= {"size", "counts"}


def test_submission_combines_blocks_as_the_challenge_script_and_either_alone(tmp_path):
    from test_direction import egoexo_files

    egoexo_files(tmp_path)  # an ego-exo prediction file and its ground truth
    exoego = {
        "exo-ego": {
            "version": "xx",
            "challenge": "correspondence",
            "results": {
                "t": {
                    "masks": {
                        "cup_0": {
                            "cam01_aria01_214-1": {"0": {"pred_mask": {"size": [1, 1], "counts": "1"}, "confidence": 0.3}}
                        }
                    },
                    "subsample_idx": [0],
                }
            },
        }
    }
    (tmp_path / "exoego.json").write_text(json.dumps(exoego))
    both = build_submission({"ego2exo": str(tmp_path / "pred.json"), "exo2ego": str(tmp_path / "exoego.json")})
    assert list(both) == ["ego-exo", "exo-ego"]
    for key in both:
        assert both[key]["version"] == "xx" and both[key]["challenge"] == "xx"
    ego_exo = json.loads((tmp_path / "pred.json").read_text())["ego-exo"]["results"]
    assert both["ego-exo"]["results"] == ego_exo and both["exo-ego"]["results"] == exoego["exo-ego"]["results"]
    gt = json.loads((tmp_path / "gt.json").read_text())
    official_reader_checks(both, "ego-exo", gt)
    alone = build_submission({"ego2exo": str(tmp_path / "pred.json")})
    assert list(alone) == ["ego-exo"]
    official_reader_checks(alone, "ego-exo", gt)
    # the block as the server reads it scores exactly as the experiment's own file
    (tmp_path / "sub.json").write_text(json.dumps(alone))
    assert evaluate(tmp_path / "sub.json", tmp_path / "gt.json") == evaluate(tmp_path / "pred.json", tmp_path / "gt.json")
    with pytest.raises(ValueError, match="exo-ego"):
        build_submission({"exo2ego": str(tmp_path / "pred.json")})  # an ego-exo file named as exo2ego


def test_cosine_matcher_scores_are_cosines_of_the_pooled_descriptors():
    g = torch.Generator().manual_seed(0)
    src_feat, dst_feat = torch.randn(2, 24, 6, 10, generator=g), torch.randn(1, 24, 8, 8, generator=g)
    src_masks = torch.zeros(2, 1, 84, 140, dtype=torch.bool)
    src_masks[0, 0, 10:40, 20:70] = True
    src_masks[1, 0, 50:80, 90:130] = True
    cand = torch.zeros(1, 5, 112, 112, dtype=torch.bool)
    for i in range(5):
        cand[0, i, 10 * i : 10 * i + 30, 5 + 15 * i : 40 + 15 * i] = True
    q, t = candidate_embeddings(CosineMatcher(), src_feat, dst_feat, src_masks, cand)
    scores = (q * t).sum(-1)
    a, b = describe(src_feat, src_masks)[:, 0], describe(dst_feat, cand)[0]
    expected = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
    assert scores.shape == (2, 5)
    assert torch.allclose(scores, expected, atol=1e-6)
    assert not list(CosineMatcher().parameters())  # nothing to train or load


def test_schema_keeps_the_cosine_matcher_weightless():
    from omama.config import validate

    cfg = tiny_config()
    cfg["experiments"]["cos"] = {
        "dataset": "tabletop",
        "backbone": "tiny-dinov2",
        "proposer": "classical",
        "split": "frame",
        "matcher": "cosine",
    }
    validate(copy.deepcopy(cfg))
    for bad in ({"train": {"epochs": 1}}, {"init": "experiment:trained-frame"}, {"existence": "head"}):
        c = copy.deepcopy(cfg)
        c["experiments"]["cos"].update(bad)
        with pytest.raises(ValueError, match=rf"config error at experiments\.cos\.{next(iter(bad))}: "):
            validate(c)


def protocol_config(**synthetic) -> dict:
    cfg = tiny_config()
    tabletop = cfg["datasets"]["tabletop"]
    tabletop["synthetic"].update(takes=4, seconds=2, val_fraction=0.25, test_fraction=0.25, **synthetic)
    tabletop["selection"]["annotation_splits"] = ["train", "val", "test"]
    cfg["datasets"] = {"tabletop": tabletop}  # no photo pairs: every experiment is evaluated on its own dataset only
    train = cfg["experiments"]["trained-frame"]["train"]
    x = {"dataset": "tabletop", "backbone": "tiny-dinov2", "proposer": "classical", "split": "official"}
    cfg["experiments"] = {
        "cosine": {**x, "matcher": "cosine"},
        "official": {**x, "train": train},
        "official-e2x": {
            "dataset": "tabletop",
            "backbone": "tiny-dinov2",
            "proposer": "classical",
            "split": "official",
            "direction": "ego2exo",
            "train": train | {"epochs": 1},
        },
    }
    cfg["evaluate"]["references"] = ["largest"]
    cfg["report"]["compare"] = [["cosine", "official"]]
    cfg["submissions"] = {"challenge": {"exo2ego": "official", "ego2exo": "official-e2x"}}
    return cfg


@pytest.mark.slow
def test_workflow_official_split_cosine_baseline_and_submission(tmp_path):
    run_snakemake(tmp_path, protocol_config())
    r = Layout(str(tmp_path / "results"))
    d = r.data("tabletop")
    result = lambda name, exp: json.loads(Path(r.result(name, exp, "tabletop", "test")).read_text())
    split = pd.read_parquet(d.split("official"))
    assert (split["split"] == split["annotation_split"]).all()
    test_takes = set(relations(Path(d.source()), "test"))
    assert set(split.loc[split["split"] == "test", "take_uid"]) == test_takes
    sub = json.loads(Path(r.submission("challenge")).read_text())
    assert set(sub) == {"exo-ego", "ego-exo"}
    for key, exp, direction in (("exo-ego", "official", "exo2ego"), ("ego-exo", "official-e2x", "ego2exo")):
        gt = result("ground_truth.json", exp)
        official_reader_checks(sub, key, gt)
        assert set(sub[key]["results"]) == test_takes
        frames = score_direction(sub, gt, direction)
        m = result("metrics.json", exp)
        assert frames.loc[frames.iloc[:, 5].astype(bool), "iou"].mean() == pytest.approx(m["iou"])
    cos = result("metrics.json", "cosine")
    assert 0 < cos["iou"] < 1 and cos["ci95"]["iou"]
    assert not Path(r.model("cosine")).exists()  # nothing trained
    html = Path(r.report()).read_text()
    assert "training-free (cosine)" in html and "Challenge submission" in html and "submission/challenge.json" in html


@pytest.mark.slow
def test_workflow_predict_only_test_takes_write_predictions_and_no_score(tmp_path):
    cfg = protocol_config(withhold_test="ego")
    cfg["experiments"].pop("official-e2x")  # the withheld ego masks are the ego->exo sources
    cfg["submissions"] = {"challenge": {"exo2ego": "official"}}
    run_snakemake(tmp_path, cfg)
    r = Layout(str(tmp_path / "results"))
    d = r.data("tabletop")
    result = lambda name, exp: json.loads(Path(r.result(name, exp, "tabletop", "test")).read_text())
    (test_take,) = relations(Path(d.source()), "test")
    for exp in ("official", "cosine"):
        preds = result("predictions.json", exp)["exo-ego"]["results"]
        assert set(preds) == {test_take} and preds[test_take]["masks"]
        m = result("metrics.json", exp)
        assert m["scored"] is False and "iou" not in m and m["predict_only"]["takes"] == 1
        assert m["predict_only"]["predictions"] == sum(len(f) for o in preds[test_take]["masks"].values() for f in o.values())
        assert result("ground_truth.json", exp)["annotations"] == {}
    ref = json.loads(Path(d.reference("metrics.json", "official", "classical", "test", "largest")).read_text())
    assert ref["scored"] is False
    html = Path(r.report()).read_text()
    assert "scored by the challenge server" in html.lower()
    assert set(json.loads(Path(r.submission("challenge")).read_text())["exo-ego"]["results"]) == {test_take}
