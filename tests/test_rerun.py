"""Re-running after a config change: Snakemake's own dry run says exactly which jobs re-run and why.

One tiny run to report.html is shared by the module; each test changes one setting and reads
``snakemake -n``: the jobs it would run, each job's reason, and the reasons summary. Config
reaches rules only through ``params:``, so a changed setting shows up as "Params have changed"
on the stage that owns it; everything downstream re-runs because its input is updated, and
nothing upstream re-runs.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_snakemake, tiny_config

pytestmark = pytest.mark.slow

UPSTREAM = {"synthesize", "take_index", "download", "extract", "pairs"}


def small_config() -> dict:
    """tiny_config with fewer, smaller pieces: 2 takes, one trained experiment, no robustness set."""
    cfg = tiny_config()
    cfg["synthetic"].update(takes=2, seconds=2, objects=2)
    cfg["experiments"] = {k: cfg["experiments"][k] for k in ("untrained", "trained-frame")}
    cfg["experiments"]["trained-frame"]["train"].update(epochs=1)
    cfg["evaluate"]["references"] = ["random"]
    cfg["robustness"].update(synthetic_pairs=0, experiments=[])
    cfg["report"].update(compare=["untrained", "trained-frame"], overlays=1)
    return cfg


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
        return {j.rule for j in self.jobs if j.reason.startswith("Params have changed")}


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
def finished(tmp_path_factory) -> tuple[Path, dict]:
    """A completed run of the default target on the small config."""
    work = tmp_path_factory.mktemp("rerun")
    cfg = small_config()
    run_snakemake(work, cfg)
    assert (work / "results" / "report.html").is_file()
    return work, cfg


def dry_run(finished, change) -> DryRun:
    work, cfg = finished
    cfg = copy.deepcopy(cfg)
    change(cfg)
    return parse_dry_run(run_snakemake(work, cfg, "-n").stdout)


def test_same_config_nothing_to_do(finished):
    plan = dry_run(finished, lambda c: None)
    assert plan.jobs == [], f"an unchanged config re-runs {plan.rules()}:\n{plan.text[-3000:]}"
    assert "Nothing to be done" in plan.text


def assert_plan(plan: DryRun, params: set[str], runs: set[str], untouched: set[str]) -> None:
    summary = plan.reasons.get("params have changed since last execution", set())
    assert plan.params_changed() == params, plan.text[-4000:]
    assert summary == params, plan.reasons
    assert plan.rules() - {"all"} == runs, plan.text[-4000:]
    assert not plan.rules() & untouched, f"upstream stages re-run: {plan.rules() & untouched}"
    for job in plan.jobs:
        if job.rule not in params | {"all"}:
            assert job.reason.startswith("Input files updated by another job"), (job, plan.text[-3000:])


@pytest.mark.parametrize("change", [
    lambda c: c["split"].update(ratios=[0.6, 0.2, 0.2]),
    lambda c: c["split"].update(seed=1),
], ids=["ratios", "seed"])
def test_split_change_reruns_split_and_below(finished, change):
    plan = dry_run(finished, change)
    assert_plan(plan, params={"split"}, runs={"split", "train", "predict", "evaluate", "reference", "report"},
                untouched=UPSTREAM | {"features", "proposals"})
    assert [j.wildcards for j in plan.jobs if j.rule == "split"] == ["split=frame"]


def test_backbone_change_reruns_features_not_frames(finished):
    plan = dry_run(finished, lambda c: c["backbones"]["tiny-dinov2"].update(dtype="float32"))
    assert_plan(plan, params={"features"},
                runs={"features", "train", "predict", "evaluate", "report"},
                untouched=UPSTREAM | {"proposals", "split", "reference"})
    takes = list((finished[0] / "results" / "frames").iterdir())
    assert sum(j.rule == "features" for j in plan.jobs) == len(takes) == finished[1]["synthetic"]["takes"]


def test_training_change_reruns_that_experiment_only(finished):
    plan = dry_run(finished, lambda c: c["experiments"]["trained-frame"]["train"].update(lr=1.0e-4))
    assert_plan(plan, params={"train"}, runs={"train", "predict", "evaluate", "report"},
                untouched=UPSTREAM | {"features", "proposals", "split", "reference"})
    exps = {j.wildcards for j in plan.jobs if j.rule in {"train", "predict", "evaluate"}}
    assert exps and all("exp=trained-frame" in w for w in exps), exps


def test_report_option_reruns_report_only(finished):
    plan = dry_run(finished, lambda c: c["report"].update(overlays=2))
    assert_plan(plan, params={"report"}, runs={"report"}, untouched=UPSTREAM | {"features", "train", "predict"})
