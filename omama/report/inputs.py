"""What the report reads: its settings (``ReportParams``), the files its rule declares (``report_inputs``)
and the guard that reads only those (``Inputs``). Light: no matplotlib."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from omama.experiment import Experiment
from omama.layout import DataLayout, Layout

RESULTS_FILES = ("metrics.json", "samples.parquet", "predictions.json")


@dataclass
class ReportParams:
    """Everything the report needs from the config (plain values, passed through ``params:``)."""

    results: str
    datasets: dict
    experiments: dict  # name -> Experiment.settings("report")
    backbones: dict
    proposers: dict
    subsets: list
    references: list
    compare: list
    overlays: int
    bootstrap: dict  # Bootstrap settings: resamples, level, seed
    submissions: dict  # config submissions: name -> {direction: experiment}
    visibility: list  # datasets whose source holds ground-truth visibility

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

    def experiment(self, name: str) -> Experiment:
        return Experiment.of(name, self.experiments[name])

    def evaluated_on(self, dataset: str, direction: str | None = None) -> dict:
        """The experiments scored on ``dataset`` (of ``direction`` when given), in config order."""
        return {
            n: x
            for n, x in self.experiments.items()
            if dataset in x["evaluate_on"] and (direction is None or x["direction"] == direction)
        }

    def datasets_used(self) -> list[str]:
        """Every dataset an experiment trains or is scored on, in config order."""
        used = {d for x in self.experiments.values() for d in (x["dataset"], *x["evaluate_on"])}
        return [d for d in self.datasets if d in used]

    def trained_on(self) -> list[str]:
        """The datasets some experiment trains on (their splits hold train, val and test): the report's main
        sections; the others are datasets experiments are only scored on."""
        return [d for d in self.datasets_used() if any(x["dataset"] == d for x in self.experiments.values())]

    def splits_on(self, dataset: str) -> list[str]:
        return sorted({self.experiment(n).split_on(dataset) for n in self.evaluated_on(dataset)})

    def subsets_on(self, dataset: str, name: str) -> list[str]:
        return self.experiment(name).subsets_on(dataset, self.subsets)


def by_direction(experiments: dict, direction: str) -> dict:
    """The experiments of one direction (exo2ego, ego2exo), in config order."""
    return {n: x for n, x in experiments.items() if x["direction"] == direction}


class Inputs:
    """The report's declared input files, named by the results layout: ``inputs.history(exp)`` is the path
    ``Layout.history(exp)`` gives, if the report rule declares it (or a folder above it, such as a take's
    ``images``); any other path raises instead of being read. ``inputs.data(dataset)`` is the same guard over
    one dataset: its ``DataLayout`` paths, and ``result(name, exp, subset)`` of the experiments there."""

    def __init__(self, layout: Layout, declared: Iterable[str], dataset: str | None = None):
        self.layout, self.dataset = layout, dataset
        self.declared = declared if isinstance(declared, frozenset) else frozenset(os.path.normpath(f) for f in declared)

    def data(self, dataset: str) -> Inputs:
        return Inputs(self.layout, self.declared, dataset)

    def has(self, path) -> bool:
        path = Path(os.path.normpath(path))
        return any(str(p) in self.declared for p in (path, *path.parents))

    def _guard(self, path) -> Path:
        if not self.has(path):
            raise ValueError(f"the report would read {path}, which the report rule does not declare as an input")
        return Path(path)

    def result(self, name: str, exp: str, subset: str) -> Path:
        """One evaluated file of ``exp`` on this dataset's ``subset``."""
        return self._guard(self.layout.result(name, exp, self.dataset, subset))

    def __getattr__(self, name: str):
        if self.dataset is not None and callable(getattr(DataLayout, name, None)):
            target = self.layout.data(self.dataset)
        elif callable(getattr(Layout, name, None)):
            target = self.layout
        else:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._guard(getattr(target, name)(*args, **kwargs))


def dataset_inputs(p: ReportParams, dataset: str, takes: list[str]) -> dict[str, list[str]]:
    """The files of one dataset the report reads, by kind: its experiments' results, the reference predictors'
    metrics and samples, the take index, pairs, splits, recall, feature stores, annotations and frames."""
    r, d = p.layout, p.layout.data(dataset)
    exps = p.evaluated_on(dataset)
    out = {
        "results": [r.result(f, n, dataset, s) for n in exps for s in p.subsets_on(dataset, n) for f in RESULTS_FILES],
        "references": sorted(
            {
                d.reference(f, p.experiment(n).split_on(dataset), x["proposer_name"], s, ref, x["direction"])
                for n, x in exps.items()
                for s in p.subsets_on(dataset, n)
                for ref in p.references
                for f in ("metrics.json", "samples.parquet")
            }
        ),
        "splits": sorted({f(s) for s in p.splits_on(dataset) for f in (d.split, d.split_diagnostics)}),
        "recall": sorted({d.recall(x["proposer_name"], t) for x in exps.values() for t in takes}),
        "features": sorted({d.features(x["backbone_name"], t) for x in exps.values() for t in takes}),
        "frames": [d.index(), d.index_summary(), d.pairs_summary()]
        + [d.annotation(t) for t in takes]
        + [d.images(t) for t in takes],
    }
    if dataset in p.visibility:
        out["visibility"] = [d.visibility()]
    return out


def report_inputs(p: ReportParams, takes: dict[str, list[str]]) -> dict[str, list[str]]:
    """The files the report reads, by kind (the report rule's inputs, less the timing table, which the rule
    adds): every used dataset's (``takes``: dataset -> its takes), the training histories, the existence
    heads' calibrations and the submission files."""
    r = p.layout
    out: dict[str, list[str]] = {}
    for dataset in p.datasets_used():
        for kind, files in dataset_inputs(p, dataset, takes[dataset]).items():
            out.setdefault(kind, []).extend(files)
    out["history"] = [r.history(e) for e, x in p.experiments.items() if x["train"]]
    out["existence"] = [r.existence("calibration.json", e) for e, x in p.experiments.items() if x["existence"] == "head"]
    out["submissions"] = [r.submission(n) for n in p.submissions]
    return out


def takes_of(inputs: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each dataset's takes, in the order of the declared annotation files."""
    out: dict[str, list[str]] = {}
    for path in inputs.get("frames", []):
        p = Path(path)
        if p.name == "annotation.json":
            out.setdefault(p.parents[2].name, []).append(p.parent.name)
    return out
