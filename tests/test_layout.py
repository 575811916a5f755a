"""The results layout has one owner: omama.layout names every path, its patterns are the files it
names, and the rule files, the report and the report's fixtures build no results path by hand."""

from __future__ import annotations

import inspect
import re
import sys

from conftest import REPO

from omama.layout import Layout, source_relations


def wildcard_methods():
    """(name, parameter names) of every Layout method whose parameters default to {placeholders}."""
    for name, fn in inspect.getmembers(Layout, inspect.isfunction):
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        if fn.__annotations__.get("return") == "str" and params and all(p.default == f"{{{p.name}}}" for p in params):
            yield name, [p.name for p in params]


def test_every_pattern_is_the_path_it_names():
    """What a rule declares with ``L.x()`` is the file code finds with ``L.x(values)``, for the main
    tree and for a photo-pair set's tree."""
    methods = dict(wildcard_methods())
    assert {"annotation", "images", "features", "proposals", "recall", "split", "model", "history"} <= set(methods)
    for layout in (Layout("results"), Layout("results").photo_set("robustness")):
        for name, params in methods.items():
            values = {p: f"v-{p}" for p in params}
            pattern = getattr(layout, name)()
            assert pattern.format(**values) == getattr(layout, name)(**values), name
    assert Layout("R").photo_set().annotation() == "R/{rset}/frames/{take}/annotation.json"
    assert Layout("R").result("metrics.json", "e", "test") == "R/experiments/e/test/metrics.json"
    assert source_relations("S", "val") == "S/annotations/relations_val.json"


def test_layout_and_report_inputs_import_no_heavy_library():
    import subprocess

    code = "import sys, omama.layout, omama.report; print(sorted({'matplotlib', 'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


HAND_MADE = re.compile(
    r'\{(?:RESULTS|LOGS|BENCH|ROBUST)\}/|/ "(?:frames|experiments|reference|splits|'
    r'proposals|features|index|benchmarks)"'
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
