"""Attacks on the pipeline's inputs and config (issue 10: no stale state, no silent loss).

Each test feeds one malformed input or config and checks that it is refused early with an
error naming the file / take / experiment, or counted and reported as a skip.
"""

from __future__ import annotations

import copy
import errno
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import default_config, run_snakemake, tiny_config
from data_fixtures import FRAMES, SELECTION, copy_source, index

from omama.config import ConfigError, validate
from omama.data.extract import extract_take
from omama.data.masks import encode_rle
from omama.data.pairs import write_pairs
from omama.data.splits import write_split
from omama.data.takes import build_index
from omama.experiment import experiments
from omama.layout import Layout
from omama.preflight import preflight
from omama.report.tables import skip_counts


def run_index(source: Path, out: Path, **selection):
    return build_index(
        source_root=source,
        selection={**SELECTION, **selection},
        takes_out=out / "index/takes.json",
        records_dir=out / "index/takes",
        summary_out=out / "index/summary.json",
    )


def relations(source: Path, split: str) -> Path:
    return source / "annotations" / f"relations_{split}.json"


def rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def validated(cfg: dict) -> dict:
    """A copy of ``cfg`` as the workflow validates it (the schema's and each kind's defaults filled)."""
    return validate(copy.deepcopy(cfg))


def schema_error(cfg: dict) -> str:
    """The one-sentence error the workflow stops with for ``cfg`` (the key, the rule, what the key is for)."""
    with pytest.raises(ConfigError) as e:
        validated(cfg)
    return str(e.value)


# ---------------------------------------------------------------- 3: relations without `annotations`


@pytest.mark.parametrize(
    "change,what",
    [
        (lambda d: {"version": "v2", "annotation": d["annotations"]}, "no top-level 'annotations'"),
        (lambda d: {"annotations": list(d["annotations"].values())}, "'annotations' is an array"),
        (lambda d: [d], "top level is an array"),
    ],
)
def test_relations_file_without_annotations_is_an_error_naming_the_file(synthetic_source, tmp_path, change, what):
    src = copy_source(synthetic_source, tmp_path / "src")
    rewrite(relations(src, "val"), change)
    with pytest.raises(ValueError, match="relations file .*relations_val.json") as e:
        run_index(src, tmp_path / "out")
    assert what in str(e.value)
    assert not (tmp_path / "out/index/takes.json").exists()


def test_relations_take_with_mistyped_object_masks_is_named(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    uid = next(iter(json.loads(relations(src, "train").read_text())["annotations"]))
    rewrite(
        relations(src, "train"),
        lambda d: {"annotations": {**d["annotations"], uid: {**d["annotations"][uid], "object_masks": ["x"]}}},
    )
    with pytest.raises(ValueError, match=rf"take '{uid}'.*relations_train.json.*'object_masks'"):
        run_index(src, tmp_path / "out")


# ---------------------------------------------------------------- 4: a take in both relations files


def test_take_in_both_relations_files_is_an_error_naming_take_and_files(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    train = json.loads(relations(src, "train").read_text())["annotations"]
    uid = next(iter(train))
    rewrite(relations(src, "val"), lambda d: {"annotations": {**d["annotations"], uid: train[uid]}})
    with pytest.raises(ValueError, match=rf"take '{uid}' is in both .*relations_train.json and .*relations_val.json"):
        run_index(src, tmp_path / "out")


def test_take_listed_twice_in_one_relations_file_is_an_error(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    path = relations(src, "train")
    ann = json.loads(path.read_text())["annotations"]
    uid = next(iter(ann))
    items = [json.dumps(k) + ": " + json.dumps(v) for k, v in [*ann.items(), (uid, ann[uid])]]  # JSON allows it
    path.write_text('{"annotations": {' + ", ".join(items) + "}}")
    with pytest.raises(ValueError, match=rf"take '{uid}' is listed twice in .*relations_train.json"):
        run_index(src, tmp_path / "out")


def test_malformed_manifest_names_file_and_entry(tmp_path):
    from omama.data.sources import manifest_sizes

    (tmp_path / "manifest.json").write_text(json.dumps([{"uid": "a", "paths": []}, {"uid": "b"}]))
    with pytest.raises(
        ValueError, match=r"manifest .*manifest.json: entry #1 \(uid 'b'\) is malformed: missing or mistyped 'paths'"
    ):
        manifest_sizes(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps({"entries": []}))
    with pytest.raises(ValueError, match="expected a list of entries, found dict"):
        manifest_sizes(tmp_path / "manifest.json")


def test_duplicate_take_uid_in_takes_json_is_an_error(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    rewrite(src / "takes.json", lambda takes: takes + [takes[0]])
    with pytest.raises(
        ValueError, match=rf"takes.json.*take_uid '{json.loads((src / 'takes.json').read_text())[0]['take_uid']}'.*twice"
    ):
        run_index(src, tmp_path / "out")


# ---------------------------------------------------------------- 6: empty evaluated subset


def test_zero_ratio_of_an_evaluated_subset_is_a_preflight_problem_naming_experiments():
    cfg = validated(default_config())
    cfg["datasets"]["tabletop"]["split"]["ratios"] = [0.8, 0.2, 0]
    problems = preflight(cfg)
    assert len(problems) == 1, problems
    assert "datasets.tabletop.split.ratios gives subset 'test' ratio 0" in problems[0]
    for name, x in cfg["experiments"].items():  # the official split takes its subsets from the annotation files
        on_tabletop = "tabletop" in (x["evaluate_on"] or [x["dataset"]])
        assert (repr(name) in problems[0]) == (on_tabletop and x["split"] != "official"), name
    cfg["datasets"]["tabletop"]["split"]["ratios"] = [0, 0.5, 0.5]  # trained experiments need train pairs
    (p,) = preflight(cfg)
    trained = sorted(n for n, x in cfg["experiments"].items() if x["train"] and x["split"] != "official")
    assert "subset 'train' ratio 0" in p and all(repr(n) in p for n in trained)


def test_split_that_leaves_an_evaluated_subset_empty_names_experiment_split_and_subset(tmp_path):
    from test_pairs_splits import fake_pairs

    from omama.data.splits import required_subsets

    fake_pairs(takes=1).to_parquet(tmp_path / "pairs.parquet")  # take_limit: 1 with a take split
    cfg = default_config()
    cfg["experiments"]["trained-take"] = {**cfg["experiments"]["trained-object"], "split": "take"}
    cfg = validated(cfg)
    required = required_subsets(experiments(cfg), cfg["evaluate"]["subsets"], "tabletop", "take")
    assert required == {"test": ["trained-take"], "train": ["trained-take"]}
    with pytest.raises(ValueError, match=r"split 'take' leaves subset 'test' empty.*experiment\(s\) \['trained-take'\]"):
        write_split(
            pairs_path=tmp_path / "pairs.parquet",
            strategy="take",
            ratios=[0.7, 0.15, 0.15],
            seed=0,
            split_out=tmp_path / "take.parquet",
            diagnostics_out=tmp_path / "take.json",
            required=required,
        )
    assert not (tmp_path / "take.parquet").exists()
    # Nobody needs val: an empty val is fine, and the split is written.
    write_split(
        pairs_path=tmp_path / "pairs.parquet",
        strategy="take",
        ratios=[0.7, 0.15, 0.15],
        seed=0,
        split_out=tmp_path / "take.parquet",
        diagnostics_out=tmp_path / "take.json",
        required={"train": ["x"]},
    )
    assert set(pd.read_parquet(tmp_path / "take.parquet")["split"]) == {"train"}


@pytest.mark.slow
def test_take_limit_one_with_a_take_split_stops_at_the_split(tmp_path):
    cfg = tiny_config()
    cfg["experiments"] = {"one-take": {**cfg["experiments"]["trained-frame"], "split": "take", "evaluate_on": None}}
    cfg["report"]["compare"] = []
    cfg["datasets"]["tabletop"]["selection"]["take_limit"] = 1
    proc = run_snakemake(tmp_path, cfg, check=False)
    assert proc.returncode != 0
    r = Layout("results")
    log = (tmp_path / r.log("split", "dataset", "split").format(dataset="tabletop", split="take")).read_text()
    assert "split 'take' leaves subset 'test' empty (1 group(s) of take_uid" in log
    assert "experiment(s) ['one-take'] need it" in log
    assert not (tmp_path / r.data("tabletop").split("take")).exists()
    assert not list((tmp_path / "results").glob("experiments/*/model.pt"))


def test_predict_on_an_empty_subset_names_it(tmp_path):
    from test_pairs_splits import fake_pairs

    from omama.evaluation.predict import predict_reference

    df = fake_pairs(takes=1).assign(split="train")
    df.to_parquet(tmp_path / "split.parquet")
    with pytest.raises(ValueError, match=r"subset 'test' \(exo2ego\) of .*split.parquet is empty"):
        predict_reference(
            split_table=tmp_path / "split.parquet",
            subset="test",
            annotations=[],
            proposals=[],
            predictor="random",
            seed=0,
            samples_out=tmp_path / "s.parquet",
            metrics_out=tmp_path / "m.json",
            direction="exo2ego",
        )


# ---------------------------------------------------------------- 8: identifiers that become paths


def test_take_uid_with_a_path_is_refused_and_nothing_escapes(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    bad = "../../../escaped_take"
    takes = json.loads((src / "takes.json").read_text())
    old = takes[0]["take_uid"]
    rewrite(src / "takes.json", lambda ts: [{**t, "take_uid": bad} if t["take_uid"] == old else t for t in ts])
    for split in ("train", "val"):
        rewrite(
            relations(src, split),
            lambda d: {"annotations": {(bad if k == old else k): v for k, v in d["annotations"].items()}},
        )
    out = tmp_path / "a" / "b" / "c"
    with pytest.raises(ValueError, match=r"take_uid '\.\./\.\./\.\./escaped_take'.*not a safe name"):
        run_index(src, out)
    assert not list(tmp_path.rglob("escaped_take*"))


def test_camera_with_a_path_and_root_dir_outside_the_take_are_refused(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    ann = json.loads(relations(src, "train").read_text())["annotations"]
    uid = next(iter(ann))
    obj = next(iter(ann[uid]["object_masks"]))
    cam = next(c for c in ann[uid]["object_masks"][obj] if "aria" not in c)

    def rename(d):
        masks = d["annotations"][uid]["object_masks"][obj]
        masks["../" + cam] = masks.pop(cam)
        return d

    rewrite(relations(src, "train"), rename)
    with pytest.raises(ValueError, match=rf"camera '\.\./{cam}'.*take '{uid}'.*not a safe name"):
        run_index(src, tmp_path / "out")

    src = copy_source(synthetic_source, tmp_path / "src2")
    rewrite(src / "takes.json", lambda ts: [{**t, "root_dir": "../../outside"} if t["take_uid"] == uid else t for t in ts])
    with pytest.raises(ValueError, match=rf"take '{uid}'.*video path '\.\./\.\./outside/.*leaves the take's folder"):
        run_index(src, tmp_path / "out2")


def test_real_object_names_with_spaces_and_slashes_are_kept(synthetic_source, tmp_path):
    """Object names never become paths (JSON keys and table values only), and real ones contain spaces and '/'."""
    src = copy_source(synthetic_source, tmp_path / "src")
    uid = next(iter(json.loads(relations(src, "train").read_text())["annotations"]))

    def rename(d):
        masks = d["annotations"][uid]["object_masks"]
        first = sorted(masks)[0]
        masks["salt/pepper shaker_0"] = masks.pop(first)
        return d

    rewrite(relations(src, "train"), rename)
    (record,) = [r for r in index(src, tmp_path / "out") if r["take_uid"] == uid]
    assert "salt/pepper shaker_0" in record["object_masks"]


@pytest.mark.parametrize(
    "section,name",
    [
        ("experiments", "../up"),
        ("backbones", ".hidden"),
        ("proposers", "a/b"),
        ("experiments", "tab\there"),
        ("experiments", "a..b"),
        ("datasets", "a/b"),
    ],
)
def test_config_names_that_would_be_paths_are_rejected_by_the_schema(section, name):
    cfg = default_config()
    cfg[section][name] = next(iter(cfg[section].values()))
    assert schema_error(cfg).startswith(f"config error at {section}: {name!r} does not match")


def test_robustness_pair_names_are_checked(tmp_path):
    from omama.data.photos import PhotoPairError, list_pairs

    (tmp_path / "photos" / "bad\nname").mkdir(parents=True)
    with pytest.raises(PhotoPairError, match="pair 'bad\\\\nname'.*not a safe name"):
        list_pairs(tmp_path / "photos")


# ---------------------------------------------------------------- 9: initial-weight cycles


def cycle_config(**inits) -> dict:
    cfg = validated(default_config())
    for name, init in inits.items():
        cfg["experiments"][name]["init"] = init
    return cfg


def test_init_cycles_and_unknown_experiments_are_preflight_problems():
    (p,) = preflight(cycle_config(**{"trained-frame": "experiment:trained-frame"}))
    assert "initial weights form a cycle: trained-frame -> trained-frame" in p
    (p,) = preflight(
        cycle_config(**{"trained-frame": "experiment:trained-object", "trained-object": "experiment:trained-frame"})
    )
    assert "initial weights form a cycle: trained-frame -> trained-object -> trained-frame" in p
    (p,) = preflight(cycle_config(**{"trained-object": "experiment:nope"}))
    assert "experiments.trained-object.init names experiment 'nope', which is not under experiments:" in p


@pytest.mark.slow
def test_a_real_run_with_an_init_cycle_stops_before_any_job_naming_it(tmp_path):
    cfg = tiny_config()
    cfg["experiments"]["trained-frame"]["init"] = "experiment:trained-object"
    cfg["experiments"]["trained-object"]["init"] = "experiment:trained-frame"
    dry = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert "initial weights form a cycle: trained-frame -> trained-object -> trained-frame" in dry.stderr
    proc = run_snakemake(tmp_path, cfg, check=False)
    assert proc.returncode != 0 and "PREFLIGHT failed, nothing was run" in proc.stderr
    assert "trained-frame -> trained-object -> trained-frame" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_report_compare_pairs_and_ego2exo_evaluation_datasets_are_checked_before_any_job():
    cfg = validated(default_config())
    cfg["report"]["compare"] = [["cosine", "nope"], ["trained-frame", "trained-ego2exo"]]
    problems = preflight(cfg)
    assert problems == [
        "report.compare names experiment 'nope', which is not under experiments:",
        "report.compare pair ['trained-frame', 'trained-ego2exo'] names 'trained-ego2exo', an ego2exo experiment: pairs "
        "compare exo->ego experiments (ego->exo ones are in the report's both-directions section)",
    ]
    cfg["report"]["compare"] = []
    cfg["experiments"]["trained-ego2exo"]["evaluate_on"] = ["tabletop", "motorcycle"]  # (was robustness.experiments)
    assert preflight(cfg) == [
        "experiments.trained-ego2exo.evaluate_on names datasets besides its own ('tabletop'): an ego2exo experiment is "
        "scored on its own dataset only"
    ]
    cfg["report"]["compare"] = [["cosine", "trained-frame", "trained-object"]]
    with pytest.raises(Exception, match="compare"):
        validated(cfg)


# ---------------------------------------------------------------- 10: results at the root


@pytest.mark.parametrize("results", ["", "/", "//"])
def test_empty_or_root_results_is_rejected_by_the_schema(results):
    cfg = default_config()
    cfg["results"] = results
    with pytest.raises(Exception, match="results"):
        validated(cfg)


def test_results_resolving_to_the_root_is_a_preflight_problem():
    cfg = validated({**default_config(), "results": "/tmp/../.."})
    (p,) = preflight(cfg)
    assert "results '/tmp/../..' resolves to the filesystem root" in p


# ---------------------------------------------------------------- 11: takes.json errors


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda ts: {"takes": ts}, r"takes.json .*: expected a list of takes, found an object with keys \['takes'\]"),
        (
            lambda ts: [{k: v for k, v in t.items() if k != "take_uid"} if i == 1 else t for i, t in enumerate(ts)],
            r"takes.json .*: take #1 \(take_name '.*'\) has no 'take_uid'",
        ),
        (lambda ts: [ts[0], "oops", *ts[1:]], r"takes.json .*: take #1 is not an object"),
    ],
)
def test_malformed_takes_json_names_file_take_and_key(synthetic_source, tmp_path, change, match):
    src = copy_source(synthetic_source, tmp_path / "src")
    rewrite(src / "takes.json", change)
    with pytest.raises(ValueError, match=match):
        run_index(src, tmp_path / "out")


def test_take_without_root_dir_names_take_and_key(synthetic_source, tmp_path):
    src = copy_source(synthetic_source, tmp_path / "src")
    uid = next(iter(json.loads(relations(src, "train").read_text())["annotations"]))
    rewrite(
        src / "takes.json", lambda ts: [{k: v for k, v in t.items() if k != "root_dir" or t["take_uid"] != uid} for t in ts]
    )
    with pytest.raises(ValueError, match=rf"takes.json .*: take '{uid}' has no 'root_dir'"):
        run_index(src, tmp_path / "out")


# ---------------------------------------------------------------- 12: empty exo masks


@pytest.fixture
def extracted_one(synthetic_source, tmp_path):
    """(annotation path, take index path, folder) of the first tiny take, extracted."""
    r = index(synthetic_source, tmp_path / "out")[0]
    out = tmp_path / r["take_uid"]
    extract_take(
        record=r,
        raw_root=synthetic_source,
        annotation_out=out / "annotation.json",
        images_out=out / "images",
        frames_cfg=FRAMES,
    )
    return out / "annotation.json", str(tmp_path / "out/index/takes.json"), tmp_path


def test_empty_exo_masks_are_counted_skips_not_pairs(synthetic_source, tmp_path):
    from omama.data.pairs import EMPTY_EXO

    records = index(synthetic_source, tmp_path / "out")
    paths = []
    for r in records:
        out = tmp_path / r["take_uid"]
        extract_take(
            record=r,
            raw_root=synthetic_source,
            annotation_out=out / "annotation.json",
            images_out=out / "images",
            frames_cfg=FRAMES,
        )
        paths.append(out / "annotation.json")
    takes = str(tmp_path / "out/index/takes.json")
    before = write_pairs(
        annotation_paths=paths, takes_index=takes, pairs_out=tmp_path / "p0.parquet", summary_out=tmp_path / "p0.json"
    )
    a = json.loads(paths[0].read_text())
    emptied = 0
    for per_cam in a["masks"].values():
        for cam in a["exo_cams"]:
            for key, rle in per_cam.get(cam, {}).items():
                per_cam[cam][key] = encode_rle(np.zeros(rle["size"], bool))
                emptied += 1
    paths[0].write_text(json.dumps(a))
    summary = write_pairs(
        annotation_paths=paths, takes_index=takes, pairs_out=tmp_path / "p1.parquet", summary_out=tmp_path / "p1.json"
    )
    df = pd.read_parquet(tmp_path / "p1.parquet")
    assert (df.loc[df["direction"] == "exo2ego", "exo_area"] > 0).all()
    assert summary["skipped"][EMPTY_EXO] == emptied > 0
    not_in_ego = summary["skipped"]["exo mask at a frame not annotated in the ego camera"]
    assert summary["pairs"] == before["pairs"] - (
        emptied - (not_in_ego - before["skipped"]["exo mask at a frame not annotated in the ego camera"])
    )
    assert skip_counts(json.loads((tmp_path / "p1.json").read_text()))[EMPTY_EXO] == emptied  # the report's skip table
    assert summary["ego_present_empty_mask"] == 0


def test_empty_ego_masks_stay_present_and_are_counted(extracted_one):
    """An empty ego mask is still a mask (the official evaluator sees its key): present, but counted."""
    path, takes, tmp_path = extracted_one
    a = json.loads(path.read_text())
    obj, key = next(
        (o, k)
        for o, per_cam in sorted(a["masks"].items())
        for k in per_cam.get(a["ego_cam"], {})
        if any(k in per_cam.get(c, {}) for c in a["exo_cams"])
    )
    rle = a["masks"][obj][a["ego_cam"]][key]
    a["masks"][obj][a["ego_cam"]][key] = encode_rle(np.zeros(rle["size"], bool))
    path.write_text(json.dumps(a))
    summary = write_pairs(
        annotation_paths=[path], takes_index=takes, pairs_out=tmp_path / "p.parquet", summary_out=tmp_path / "p.json"
    )
    df = pd.read_parquet(tmp_path / "p.parquet")
    rows = df[(df["object"] == obj) & (df["frame"] == int(key))]
    assert len(rows) and rows["ego_present"].all() and (rows["ego_area"] == 0).all()
    assert summary["ego_present_empty_mask"] == len(rows)


# ---------------------------------------------------------------- 13: disk full, schema messages, ratios


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield d
    subprocess.run(["umount", "--lazy", str(d)], check=True)  # lazy: a failed writer's handle may still be open


def test_full_disk_on_torch_save_says_so(tiny_disk):
    import torch

    from omama.model.train import save_state

    with pytest.raises(OSError, match=rf"no space left on device at {tiny_disk}/last.pt") as e:
        save_state(tiny_disk / "last.pt", {"w": torch.zeros(1_000_000)})
    assert e.value.errno == errno.ENOSPC
    assert list(tiny_disk.iterdir()) == []  # no partial file left behind
    from omama.io import atomic_path

    # torch.save straight into an atomic path (as train.py writes model.pt) is recognised too.
    with pytest.raises(OSError, match=rf"no space left on device at {tiny_disk}/model.pt"):
        with atomic_path(tiny_disk / "model.pt") as tmp:
            torch.save({"w": torch.zeros(1_000_000)}, tmp)
    assert list(tiny_disk.iterdir()) == []


def test_full_disk_on_parquet_and_images_says_so(tiny_disk):
    import cv2

    from omama.io import atomic_path, write_image, write_parquet

    with pytest.raises(OSError, match=rf"no space left on device at {tiny_disk}/a.parquet"):
        write_parquet(tiny_disk / "a.parquet", pd.DataFrame({"x": np.random.default_rng(0).random(300_000)}))
    noise = np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    with pytest.raises(OSError, match=rf"no space left on device at {tiny_disk}/images"):  # cv2.imwrite only returns False
        with atomic_path(tiny_disk / "images") as tmp:  # as extract_take writes frames
            tmp.mkdir()
            write_image(tmp / "0.jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert list(tiny_disk.iterdir()) == []


def test_enospc_from_any_write_is_named(tmp_path, monkeypatch):
    from omama import io

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.json, "dump", full)
    with pytest.raises(OSError, match=rf"no space left on device at {tmp_path}/x.json"):
        io.write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key,value,rule",
    [
        ("epochs", 0, "0 is less than the minimum of 1"),
        ("batch_size", 0, "0 is less than the minimum of 1"),
        ("lr", -1, "-1 is less than or equal to the minimum of 0"),
        ("optimizer", "sgd", "'optimizer' was unexpected"),
    ],
)
def test_schema_errors_name_the_key_and_the_rule(key, value, rule):
    cfg = default_config()
    cfg["experiments"]["trained-frame"]["train"][key] = value
    msg = schema_error(cfg)
    where = "experiments.trained-frame.train" + ("" if key == "optimizer" else f".{key}")
    assert msg.startswith(f"config error at {where}: ") and rule in msg, msg


def test_a_schema_error_ends_a_dry_run_with_the_key_and_the_rule(tmp_path):
    cfg = tiny_config()
    cfg["experiments"]["trained-frame"]["train"]["batch_size"] = 0
    proc = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "config error at experiments.trained-frame.train.batch_size: 0 is less than the minimum of 1" in proc.stderr
    assert "not valid under any of the given schemas" not in proc.stderr


def test_frame_scale_errors_name_the_rule():
    cfg = default_config()
    frames = cfg["datasets"]["tabletop"]["frames"]
    frames["ego_scale"] = 1.5
    assert "maximum of 1" in schema_error(cfg)
    frames["ego_scale"] = "half"
    assert schema_error(cfg).startswith("config error at datasets.tabletop.frames.ego_scale: 'half' does not match '^auto$'")
    frames["ego_scale"] = 0.5
    validated(cfg)


def test_split_ratios_must_sum_to_one():
    cfg = validated(default_config())
    cfg["datasets"]["tabletop"]["split"]["ratios"] = [1, 1, 1]
    (p,) = preflight(cfg)
    assert "datasets.tabletop.split.ratios [1, 1, 1] sum to 3, not 1" in p
    from omama.data.splits import assign_groups

    with pytest.raises(ValueError, match="sum to 3, not 1"):
        assign_groups(pd.Series([1, 2, 3]), [1, 1, 1], 0)
