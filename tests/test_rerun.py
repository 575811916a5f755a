"""Re-running after a config change: Snakemake's own dry run says exactly which jobs re-run and why.

The session's finished tiny run (conftest ``tiny_run``: report.html done) is the base; each test
changes one setting and reads ``snakemake -n``: the jobs it would run, each job's reason, and the
reasons summary. Config reaches rules only through ``params:`` and their settings records (results/params/), so a
changed setting shows up as an updated input (the record) on the stage that owns it; everything
downstream re-runs because its input is updated by another job, and nothing upstream re-runs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake

from omama.layout import Layout

pytestmark = pytest.mark.slow

UPSTREAM = {"prepare", "take_index", "download", "extract", "pairs"}  # every dataset's data stages


@dataclass
class PlannedJob:
    rule: str
    wildcards: str
    reason: str


@dataclass
class DryRun:
    jobs: list[PlannedJob]
    reasons: dict[str, set[str]]  # the "Reasons:" summary: reason -> rules
    text: str

    def rules(self) -> set[str]:
        return {j.rule for j in self.jobs}

    def params_changed(self) -> set[str]:
        """Rules whose own settings changed: the settings record the job reads (results/params/) is updated.
        (Snakemake's own "Params have changed" is not checked once another reason makes a job run.)"""
        return {j.rule for j in self.jobs if j.reason.startswith("Updated input files: results/params/")}


def parse_dry_run(text: str) -> DryRun:
    """The planned jobs (rule, wildcards, reason) and the reasons summary of ``snakemake -n`` output."""
    jobs = []
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\S+):\n((?:    .*\n?)*)", text, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(2), re.M))
        jobs.append(PlannedJob(m.group(1), fields.get("wildcards", ""), fields.get("reason", "")))
    reasons: dict[str, set[str]] = {}
    block = re.search(r"^Reasons:\n((?:    .*\n?)*)", text, re.M)
    for reason, rules in re.findall(r"^    (\S[^:\n]*):\n        (.*)$", block.group(1) if block else "", re.M):
        reasons[reason] = {r.strip() for r in rules.split(",")}
    return DryRun(jobs, reasons, text)


@pytest.fixture(scope="module")
def finished(tiny_run) -> tuple[Path, dict]:
    """The shared finished tiny run and its config."""
    assert (tiny_run / "results" / "report.html").is_file()
    return tiny_run, yaml.safe_load((tiny_run / "test-config.yaml").read_text())


def takes(finished) -> int:
    """Takes of every dataset of the finished run (a feature store each)."""
    work, cfg = finished
    return sum(len(json.loads((work / Layout("results").data(d).index()).read_text())) for d in cfg["datasets"])


def dry_run(finished, change, *args: str) -> DryRun:
    """``snakemake -n`` in the finished run's folder with one setting changed (written to its own
    config file: the run's test-config.yaml stays as it was for other tests)."""
    work, cfg = finished
    cfg = copy.deepcopy(cfg)
    change(cfg)
    return parse_dry_run(run_snakemake(work, cfg, "-n", *args, config_name="rerun-config.yaml").stdout)


def test_same_config_nothing_to_do(finished):
    plan = dry_run(finished, lambda c: None)
    assert plan.jobs == [], f"an unchanged config re-runs {plan.rules()}:\n{plan.text[-3000:]}"
    assert "Nothing to be done" in plan.text


def assert_plan(plan: DryRun, params: set[str], runs: set[str], untouched: set[str]) -> None:
    summary = plan.reasons.get("updated input files", set())
    assert plan.params_changed() == params, plan.text[-4000:]
    assert summary == params, plan.reasons
    assert plan.rules() - {"all"} == runs, plan.text[-4000:]
    assert not plan.rules() & untouched, f"upstream stages re-run: {plan.rules() & untouched}"
    for job in plan.jobs:
        if job.rule not in params | {"all"}:
            assert job.reason.startswith("Input files updated by another job"), (job, plan.text[-3000:])


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["datasets"]["tabletop"]["split"].update(ratios=[0.6, 0.2, 0.2]),
        lambda c: c["datasets"]["tabletop"]["split"].update(seed=1),
    ],
    ids=["ratios", "seed"],
)
def test_split_change_reruns_split_and_below(finished, change):
    plan = dry_run(finished, change)
    assert_plan(
        plan,
        params={"split"},
        runs={"split", "train", "predict", "evaluate", "reference", "timing", "report"},
        untouched=UPSTREAM | {"features", "proposals"},
    )
    assert [j.wildcards for j in plan.jobs if j.rule == "split"] == ["dataset=tabletop, split=frame"]
    # the photo pairs (split "all") are scored again only by the retrained experiment
    photos = {j.wildcards for j in plan.jobs if "dataset=photos" in j.wildcards}
    assert photos and all("exp=trained-frame" in w for w in photos), photos


@pytest.mark.parametrize("setting", [{"dtype": "float32"}, {"resize": "nearest"}])
def test_backbone_change_reruns_features_not_frames(finished, setting):
    plan = dry_run(finished, lambda c: c["backbones"]["tiny-dinov2"].update(setting))
    assert_plan(
        plan,
        params={"features"},
        runs={"features", "train", "predict", "evaluate", "timing", "report"},
        untouched=UPSTREAM | {"proposals", "split", "reference"},
    )
    assert sum(j.rule == "features" for j in plan.jobs) == takes(finished)  # the tabletop takes and the photo pairs


def test_training_change_reruns_that_experiment_only(finished):
    plan = dry_run(finished, lambda c: c["experiments"]["trained-frame"]["train"].update(lr=1.0e-4))
    assert_plan(
        plan,
        params={"train"},
        runs={"train", "predict", "evaluate", "timing", "report"},
        untouched=UPSTREAM | {"features", "proposals", "split", "reference"},
    )
    exps = {j.wildcards for j in plan.jobs if j.rule not in {"timing", "report", "all"}}
    assert exps and all("exp=trained-frame" in w for w in exps), exps


def test_report_option_reruns_report_only(finished):
    plan = dry_run(finished, lambda c: c["report"].update(overlays=2))
    assert_plan(
        plan,
        params={"report"},
        runs={"report"},
        untouched=UPSTREAM | {"features", "proposals", "split", "train", "predict", "evaluate"},
    )


def test_forcing_one_stage_after_a_code_change(finished):
    """Code changes inside omama/ are not tracked: ``-R features --until features`` redoes that
    stage for every take and stops there."""
    plan = dry_run(finished, lambda c: None, "-R", "features", "--until", "features")
    assert plan.rules() == {"features"}, plan.text[-3000:]
    assert len(plan.jobs) == takes(finished)
    assert all(j.reason == "Forced execution" for j in plan.jobs), plan.jobs


def test_split_strategy_change_reruns_the_new_split_and_that_experiment(finished):
    plan = dry_run(finished, lambda c: c["experiments"]["trained-frame"].update(split="take"))
    assert plan.reasons["updated input files"] == {"train"}, plan.reasons
    assert plan.reasons["output files have to be generated"] == {"split", "reference"}, plan.reasons
    assert [j.wildcards for j in plan.jobs if j.rule == "split"] == ["dataset=tabletop, split=take"]
    assert all(j.reason.startswith("Missing output files") for j in plan.jobs if j.rule in {"split", "reference"})
    assert {w for j in plan.jobs if j.rule == "reference" for w in j.wildcards.split(", ") if w.startswith("split=")} == {
        "split=take"
    }
    assert not plan.rules() & (UPSTREAM | {"features", "proposals"})
    exps = {j.wildcards for j in plan.jobs if j.rule in {"train", "predict", "evaluate"}}
    assert exps and all("exp=trained-frame" in w for w in exps), exps
