"""What the report reads: its settings (``ReportParams``), the files its rule declares
(``report_inputs``) and the guard that reads only those (``Inputs``). Light: no matplotlib."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omama.layout import Layout

RESULTS_FILES = ("metrics.json", "samples.parquet", "predictions.json")


@dataclass
class ReportParams:
    """Everything the report needs from the config (plain values, passed through ``params:``)."""

    results: str
    source_kind: str
    experiments: dict
    backbones: dict
    proposers: dict
    subsets: list
    references: list
    compare: list = field(default_factory=list)
    overlays: int = 3
    robustness_experiments: list = field(default_factory=list)
    robustness_enabled: bool = False
    motorcycle_enabled: bool = False
    bootstrap: dict = field(default_factory=dict)  # Bootstrap settings: resamples, level, seed
    submissions: dict = field(default_factory=dict)  # config submissions: name -> {direction: experiment}

    @property
    def boot(self):
        """The ``omama.evaluation.metrics.Bootstrap`` of these settings (imported here: the rule files import this module)."""
        from omama.evaluation.metrics import Bootstrap

        return Bootstrap(**self.bootstrap)

    @classmethod
    def from_dict(cls, d: dict) -> ReportParams:
        return cls(**d)

    @property
    def layout(self) -> Layout:
        return Layout(self.results)


def by_direction(experiments: dict, direction: str) -> dict:
    """The experiments of one direction (exo2ego, ego2exo), in config order."""
    return {n: x for n, x in experiments.items() if x["direction"] == direction}


class Inputs:
    """The report's declared input files, named by the results layout: ``inputs.annotation(take)``
    is the path ``Layout.annotation(take)`` gives, if the report rule declares it (or a folder above
    it, such as a take's ``images``); any other path raises instead of being read."""

    def __init__(self, layout: Layout, declared: Iterable[str]):
        self.layout = layout
        self.declared = frozenset(os.path.normpath(f) for f in declared)

    def photo_set(self, rset: str) -> Inputs:
        return Inputs(self.layout.photo_set(rset), self.declared)

    def has(self, path) -> bool:
        path = Path(os.path.normpath(path))
        return any(str(p) in self.declared for p in (path, *path.parents))

    def __getattr__(self, name: str):
        method = getattr(Layout, name)
        if not callable(method):
            raise AttributeError(name)

        def declared(*args) -> Path:
            path = method(self.layout, *args)
            if not self.has(path):
                raise ValueError(f"the report would read {path}, which the report rule does not declare as an input")
            return Path(path)

        return declared


def photo_set_inputs(p: ReportParams, rset: str, pairs: list[str]) -> dict[str, list[str]]:
    """The files of one photo-pair set (R/{rset}/) the report reads, by kind: experiment results,
    reference metrics, pair index, annotations and frames."""
    r = p.layout.photo_set(rset)
    proposers = sorted({p.experiments[e]["proposer"] for e in p.robustness_experiments})
    return {
        rset: [r.result(f, e, "test") for e in p.robustness_experiments for f in RESULTS_FILES],
        f"{rset}_references": [
            r.reference(f, "take", q, "test", ref)
            for f in ("metrics.json", "samples.parquet")
            for q in proposers
            for ref in p.references
        ],
        f"{rset}_frames": [r.index()] + [r.annotation(t) for t in pairs] + [r.images(t) for t in pairs],
    }


def report_inputs(
    p: ReportParams, takes: list[str], robustness_pairs: list[str] | None = None, motorcycle_pairs: list[str] | None = None
) -> dict[str, list[str]]:
    """The result files the report reads, by kind (the report rule's inputs, less the jobs' timing
    files, which the rule adds as ``benchmarks``)."""
    r = p.layout
    exps, xs = list(p.experiments), p.experiments.values()
    out: dict[str, list[str]] = {
        "metrics": [r.result("metrics.json", e, s) for e in exps for s in p.subsets],
        "samples": [r.result("samples.parquet", e, s) for e in exps for s in p.subsets],
        "predictions": [r.result("predictions.json", e, s) for e in exps for s in p.subsets],
        "history": [r.history(e) for e in exps if p.experiments[e].get("train")],
        "references": sorted(
            {
                r.reference("metrics.json", x["split"], x["proposer"], s, ref)
                for x in xs
                for s in p.subsets
                for ref in p.references
            }
        ),
        "splits": sorted({r.split_diagnostics(x["split"]) for x in xs}),
        "split_tables": sorted({r.split(x["split"]) for x in xs}),
        "recall": sorted({r.recall(x["proposer"], t) for x in xs for t in takes}),
        "features": sorted({r.features(x["backbone"], t) for x in xs for t in takes}),
        "annotations": [r.annotation(t) for t in takes],
        "images": [r.images(t) for t in takes],
        "index": [r.index_summary(), r.index()],
        "submissions": [r.submission(n) for n in p.submissions],
        "pairs": [r.pairs_summary()],
        "existence": [r.existence("calibration.json", e) for e, x in p.experiments.items() if x["existence"] == "head"],
        "ego2exo_references": sorted(
            {
                r.reference_ego2exo("metrics.json", x["split"], x["proposer"], s, ref)
                for x in by_direction(p.experiments, "ego2exo").values()
                for s in p.subsets
                for ref in p.references
            }
        ),
    }
    if p.source_kind == "synthetic":
        out["visibility"] = [r.visibility()]
    if p.robustness_enabled:
        out.update(photo_set_inputs(p, "robustness", robustness_pairs or []))
    if p.motorcycle_enabled:
        out.update(photo_set_inputs(p, "motorcycle", motorcycle_pairs or []))
    return out


def takes_of(inputs: dict[str, list[str]]) -> list[str]:
    """The main run's takes, in the order of the declared annotation files."""
    return [Path(a).parent.name for a in inputs["annotations"]]
