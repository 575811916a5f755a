"""Defaults live in the schema: the few Python-side defaults that must exist (a stage rebuilds its
Experiment from the part of the settings it reads; a Backbone built by hand) equal the schema's."""

import dataclasses
import inspect

from omama.config import entry_schema, schema
from omama.experiment import Experiment
from omama.features.backbones import Backbone
from omama.model.setup import INIT_SEED


def test_experiment_field_defaults_are_the_schemas():
    props = schema()["properties"]["experiments"]["additionalProperties"]["properties"]
    checked = 0
    for f in dataclasses.fields(Experiment):
        if f.default is dataclasses.MISSING or f.default in ("", (), None) or f.name not in props:
            continue
        assert f.default == props[f.name]["default"], f"Experiment.{f.name}"
        checked += 1
    assert checked >= 6  # direction, matcher, init, existence, temporal, adapt


def test_backbone_resize_default_is_the_schemas():
    default = inspect.signature(Backbone.__init__).parameters["resize"].default
    assert default == entry_schema("backbones", "dinov2")["properties"]["resize"]["default"]


def test_untrained_head_seed_is_the_train_seed_default():
    assert INIT_SEED == schema()["definitions"]["train"]["properties"]["seed"]["default"]


def test_every_rule_logs_and_times_under_its_own_name():
    """A rule's log and benchmark lie under logs/<rule>/ and benchmarks/<rule>/: the report's timing table
    names jobs by that folder, so a rule copied without renaming its paths would be timed as another."""
    import re
    from pathlib import Path

    rules = 0
    for smk in sorted(Path(__file__).parents[1].glob("workflow/rules/*.smk")):
        blocks = re.split(r"^(?:rule|checkpoint) (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            rules += 1
            assert re.search(r"log:\n\s+L\.log\(\"(\w+)\"", body).group(1) == name, f"{smk.name}: rule {name}'s log"
            bench = re.search(r"benchmark:\n\s+L\.benchmark\(\"(\w+)\"", body)
            assert bench is not None or name == "timing", f"{smk.name}: rule {name} has no benchmark"
            assert bench is None or bench.group(1) == name, f"{smk.name}: rule {name}'s benchmark"
    assert rules >= 19
