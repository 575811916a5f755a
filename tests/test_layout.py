"""The results layout has one owner: omama.layout names every path, its patterns are the files it
names, and the rule files, the report and the report's fixtures build no results path by hand."""

from __future__ import annotations

import inspect
import re
import sys

from conftest import REPO

from omama.layout import DataLayout, Layout, source_relations


def wildcard_methods(cls):
    """(name, parameter names) of every method of ``cls`` whose parameters default to {placeholders}."""
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        if fn.__annotations__.get("return") == "str" and params and all(p.default == f"{{{p.name}}}" for p in params):
            yield name, [p.name for p in params]


def test_every_pattern_is_the_path_it_names():
    """What a rule declares with ``L.x()`` is the file code finds with ``L.x(values)``, for the results tree
    and for a dataset's tree (as a pattern, ``L.data()``, and as one dataset's, ``L.data(name)``)."""
    methods = dict(wildcard_methods(Layout))
    data_methods = dict(wildcard_methods(DataLayout))
    assert {"model", "history", "checkpoints", "weights", "proposer_weights", "submission"} <= set(methods)
    assert {
        "annotation",
        "images",
        "features",
        "proposals",
        "recall",
        "split",
        "split_diagnostics",
        "take_record",
        "raw",
    } <= set(data_methods)
    for layout, found in ((Layout("results"), methods), (Layout("results").data("tabletop"), data_methods)):
        for name, params in found.items():
            values = {p: f"v-{p}" for p in params}
            pattern = getattr(layout, name)()
            assert pattern.format(**values) == getattr(layout, name)(**values), name
    assert Layout("R").data().annotation().format(dataset="d", take="t") == Layout("R").data("d").annotation("t")
    assert Layout("R").data().annotation() == "R/datasets/{dataset}/frames/{take}/annotation.json"
    assert Layout("R").result("metrics.json", "e", "d", "test") == "R/experiments/e/d/test/metrics.json"
    assert Layout("R").data("d").reference("m.json", "frame", "p", "test", "random", "ego2exo") == (
        "R/datasets/d/reference/ego2exo/frame/p/test/random/m.json"
    )
    assert Layout("R").log("extract", "dataset", "take") == "R/logs/extract/{dataset}/{take}.log"
    assert source_relations("S", "val") == "S/annotations/relations_val.json"


def test_layout_and_report_inputs_import_no_heavy_library():
    import subprocess

    code = "import sys, omama.layout, omama.report; print(sorted({'matplotlib', 'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


HAND_MADE = re.compile(
    r'\{(?:RESULTS|LOGS|BENCH|ROBUST)\}/|/ "(?:frames|experiments|reference|splits|'
    r'proposals|features|index|benchmarks|datasets)"'
)


def test_no_results_path_is_built_by_hand():
    """Rule files, the report package and the report's fixtures take every results path from the layout."""
    files = [
        REPO / "Snakefile",
        *sorted((REPO / "workflow/rules").glob("*.smk")),
        *sorted((REPO / "omama/report").glob("*.py")),
        REPO / "tests/report_fixtures.py",
    ]
    found = [
        f"{f.relative_to(REPO)}:{i}: {line.strip()}"
        for f in files
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if HAND_MADE.search(line)
    ]
    assert found == []


def test_the_package_has_no_import_circle(tmp_path):
    """docs/import_graph.py (the README's import graph) finds no set of modules that import each other; the one
    circle of the flat package (predict <-> existence) is gone, and one planted in a copy is found."""
    import runpy
    import shutil

    tool = runpy.run_path(str(REPO / "docs" / "import_graph.py"))
    assert tool["circles"](tool["graph_of"](REPO / "omama")) == []
    copy = tmp_path / "omama"
    shutil.copytree(REPO / "omama", copy)
    with open(copy / "io.py", "a") as f:
        f.write("\n\ndef _planted():\n    from omama.layout import Layout  # noqa: F401\n")
    (copy / "layout.py").write_text("from omama.io import write_json  # noqa: F401\n" + (copy / "layout.py").read_text())
    assert tool["circles"](tool["graph_of"](copy)) == [["omama.io", "omama.layout"]]
