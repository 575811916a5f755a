"""The results layout: every path the workflow writes, in one place (light: no numpy, torch or matplotlib).

``Layout(root)`` names the files of one results tree; ``Layout(root).data(name)`` those of one dataset in it.
Every method's wildcard arguments default to Snakemake's ``{name}`` placeholders, so the rule files use the
same call for an output pattern (``D.annotation()``) that code uses for one file (``L.data("tabletop")
.annotation("take1")``).

    {root}/datasets/{dataset}/source/...            a prepared source: generated takes or photos, downloaded
                                                    metadata (+ visibility.parquet of synthetic takes)
    {root}/datasets/{dataset}/index/takes.json      checkpoint: selected takes (records without masks)
    {root}/datasets/{dataset}/index/summary.json    takes left out of the index, counted by reason
    {root}/datasets/{dataset}/index/takes/{take}.json   one take's record (+ its raw annotation)
    {root}/datasets/{dataset}/raw/{take}/...        downloaded videos, temporary: deleted after extraction
    {root}/datasets/{dataset}/frames/{take}/images/{cam}/{frame}.jpg, annotation.json   the per-take layout
    {root}/datasets/{dataset}/pairs.parquet, pairs.json   one row per (take, object, exo cam, frame); counts
    {root}/datasets/{dataset}/splits/{split}.parquet + .json   split assignment + diagnostics
    {root}/datasets/{dataset}/features/{backbone}/{take}.zarr   Zarr v3 store, one array per camera
    {root}/datasets/{dataset}/proposals/{proposer}/{take}.parquet   ego proposals + {take}.recall.parquet
    {root}/datasets/{dataset}/proposals/{proposer}/exo/{take}.parquet   exo proposals (ego2exo experiments)
    {root}/datasets/{dataset}/reference/{split}/{proposer}/{subset}/{predictor}/{samples.parquet,metrics.json}
    {root}/datasets/{dataset}/reference/ego2exo/{split}/...   the same in the ego->exo direction
    {root}/weights/{backbone}.json, weights/proposers/{proposer}.json   pretrained files fetched: SHA-256, origin
    {root}/experiments/{exp}/model.pt, train/{history.json,checkpoints/}   the matching head
    {root}/experiments/{exp}/existence/...          existence: head -- model.pt, calibration.json, history.json
    {root}/experiments/{exp}/temporal/memory.json   temporal: memory -- the fusion fitted on validation
    {root}/experiments/{exp}/{dataset}/{subset}/... predictions.json, ground_truth.json, samples.parquet, metrics.json
    {root}/submission/{name}.json                   challenge submission: exo-ego and/or ego-exo blocks
    {root}/timing.parquet, report.html
    {root}/logs/{rule}/..., benchmarks/{rule}/..., params/{rule}/...   per job: log, timing, settings record
"""

from __future__ import annotations

from dataclasses import dataclass


def source_takes(source: str) -> str:
    """takes.json of a source folder in the Ego-Exo4D layout."""
    return f"{source}/takes.json"


def source_relations(source: str, part: str = "{part}") -> str:
    """The relation annotations of one annotation split (train, val, test) of a source folder."""
    return f"{source}/annotations/relations_{part}.json"


def source_manifest(source: str) -> str:
    """The video sizes of the takes (egoexo source)."""
    return f"{source}/manifest.json"


def frame_file(frame: int | str) -> str:
    """The file name of one frame's image, in ``images/<cam>/`` (the one place it is written)."""
    return f"{frame}.jpg"


@dataclass(frozen=True)
class DataLayout:
    """The paths of one dataset's tree, ``root`` = ``{results}/datasets/{dataset}``."""

    root: str

    # source and take index
    def source(self) -> str:
        """The prepared source (kinds that generate or download it first)."""
        return f"{self.root}/source"

    def visibility(self) -> str:
        """Ground-truth visibility of generated takes (synthetic kind)."""
        return f"{self.source()}/visibility.parquet"

    def index(self) -> str:
        return f"{self.root}/index/takes.json"

    def index_summary(self) -> str:
        return f"{self.root}/index/summary.json"

    def take_records(self) -> str:
        return f"{self.root}/index/takes"

    def take_record(self, take: str = "{take}") -> str:
        return f"{self.take_records()}/{take}.json"

    # per take
    def raw(self, take: str = "{take}") -> str:
        return f"{self.root}/raw/{take}"

    def frames(self, take: str = "{take}") -> str:
        return f"{self.root}/frames/{take}"

    def annotation(self, take: str = "{take}") -> str:
        return f"{self.frames(take)}/annotation.json"

    def images(self, take: str = "{take}") -> str:
        return f"{self.frames(take)}/images"

    def image(self, take: str, cam: str, frame: int | str) -> str:
        return f"{self.images(take)}/{cam}/{frame_file(frame)}"

    # pairs and splits
    def pairs(self) -> str:
        return f"{self.root}/pairs.parquet"

    def pairs_summary(self) -> str:
        return f"{self.root}/pairs.json"

    def split(self, split: str = "{split}") -> str:
        return f"{self.root}/splits/{split}.parquet"

    def split_diagnostics(self, split: str = "{split}") -> str:
        return f"{self.root}/splits/{split}.json"

    # features and proposals
    def features(self, backbone: str = "{backbone}", take: str = "{take}") -> str:
        return f"{self.root}/features/{backbone}/{take}.zarr"

    def proposals(self, proposer: str = "{proposer}", take: str = "{take}") -> str:
        return f"{self.root}/proposals/{proposer}/{take}.parquet"

    def recall(self, proposer: str = "{proposer}", take: str = "{take}") -> str:
        return f"{self.root}/proposals/{proposer}/{take}.recall.parquet"

    def exo_proposals(self, proposer: str = "{proposer}", take: str = "{take}") -> str:
        return f"{self.root}/proposals/{proposer}/exo/{take}.parquet"

    def exo_recall(self, proposer: str = "{proposer}", take: str = "{take}") -> str:
        return f"{self.root}/proposals/{proposer}/exo/{take}.recall.parquet"

    # reference predictors
    def reference(
        self,
        name: str,
        split: str = "{split}",
        proposer: str = "{proposer}",
        subset: str = "{subset}",
        predictor: str = "{predictor}",
        direction: str = "exo2ego",
    ) -> str:
        """One file (samples.parquet, metrics.json) of a reference predictor (ego->exo ones on the exo proposals)."""
        where = split if direction == "exo2ego" else f"ego2exo/{split}"
        return f"{self.root}/reference/{where}/{proposer}/{subset}/{predictor}/{name}"


@dataclass(frozen=True)
class Layout:
    """The paths of one results tree under ``root``."""

    root: str

    def data(self, dataset: str = "{dataset}") -> DataLayout:
        """The tree of one dataset."""
        return DataLayout(f"{self.root}/datasets/{dataset}")

    # weights
    def weights(self, backbone: str = "{backbone}") -> str:
        return f"{self.root}/weights/{backbone}.json"

    def proposer_weights(self, proposer: str = "{proposer}") -> str:
        """The record of a proposer's checkpoint, fetched into the weights cache."""
        return f"{self.root}/weights/proposers/{proposer}.json"

    # experiments
    def experiment(self, exp: str = "{exp}") -> str:
        return f"{self.root}/experiments/{exp}"

    def model(self, exp: str = "{exp}") -> str:
        return f"{self.experiment(exp)}/model.pt"

    def history(self, exp: str = "{exp}") -> str:
        return f"{self.experiment(exp)}/train/history.json"

    def checkpoints(self, exp: str = "{exp}") -> str:
        return f"{self.experiment(exp)}/train/checkpoints"

    def existence(self, name: str, exp: str = "{exp}") -> str:
        """One file of an experiment's existence head: model.pt, calibration.json or history.json."""
        return f"{self.experiment(exp)}/existence/{name}"

    def temporal(self, exp: str = "{exp}") -> str:
        """An experiment's temporal memory fit (temporal: memory): alpha, gamma, what validation gave each."""
        return f"{self.experiment(exp)}/temporal/memory.json"

    def result(self, name: str, exp: str = "{exp}", dataset: str = "{dataset}", subset: str = "{subset}") -> str:
        """One evaluated file of an experiment on a dataset's subset: predictions.json, ground_truth.json,
        samples.parquet or metrics.json."""
        return f"{self.experiment(exp)}/{dataset}/{subset}/{name}"

    def submission(self, name: str = "{name}") -> str:
        """A challenge submission file (config ``submissions``): the one JSON the challenge server takes."""
        return f"{self.root}/submission/{name}.json"

    # report, jobs
    def timing(self) -> str:
        """Every job's timing (its benchmark file), for the report."""
        return f"{self.root}/timing.parquet"

    def report(self) -> str:
        return f"{self.root}/report.html"

    @property
    def logs(self) -> str:
        return f"{self.root}/logs"

    @property
    def benchmarks(self) -> str:
        return f"{self.root}/benchmarks"

    def job(self, rule: str, *wildcards: str) -> str:
        """One job of ``rule`` by its wildcards (their ``{name}`` placeholders): ``features/{dataset}/...``, the
        name its log, timing and settings record share."""
        return "/".join([rule, *(f"{{{w}}}" for w in wildcards)])

    def log(self, rule: str, *wildcards: str) -> str:
        """The log of one job of ``rule`` (see ``job``)."""
        return f"{self.logs}/{self.job(rule, *wildcards)}.log"

    def benchmark(self, rule: str, *wildcards: str) -> str:
        """The benchmark (timing) file of one job of ``rule``; its first folder names the rule in the report."""
        return f"{self.benchmarks}/{self.job(rule, *wildcards)}.tsv"

    def params(self, unit: str) -> str:
        """The settings record of a stage's jobs, ``unit`` such as ``features/{backbone}``: the settings its
        outputs were made with, rewritten (new time) only when they change, so a job re-runs when they do
        even without Snakemake's own records (a copied results folder). Each record has a folder of its own:
        Snakemake lists a folder's files once per run, and a record is written while the DAG is built."""
        return f"{self.root}/params/{unit}/settings.json"
