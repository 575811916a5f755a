"""The results layout: every path the workflow writes, in one place (light: no numpy, torch or matplotlib).

``Layout(root)`` names the files of one results tree: the main run (``root`` = config["results"]) or a
photo-pair set (``Layout(root).photo_set("robustness")``: the same stages under ``root/robustness``).
Every method's wildcard arguments default to Snakemake's ``{name}`` placeholders, so the rule files use
the same call for an output pattern (``L.annotation()``) that code uses for one file
(``L.annotation("take1")``).

    {root}/synthetic/...                          synthetic source (Ego-Exo4D layout) + visibility.parquet
    {root}/source/{takes.json,annotations/}       metadata + annotations (egoexo source) + manifest.json
    {root}/index/takes.json                       checkpoint: selected takes (records without masks)
    {root}/index/summary.json                     takes left out of the index, counted by reason
    {root}/index/takes/{take}.json                one take's record + its raw (LZString) annotation
    {root}/raw/{take}/...                         downloaded videos, temporary: deleted after extraction
    {root}/frames/{take}/images/{cam}/{frame}.jpg processed frames; {root}/frames/{take}/annotation.json
    {root}/pairs.parquet, pairs.json              one row per (take, object, exo cam, frame); counts + skips
    {root}/splits/{split}.parquet + .json         split assignment + diagnostics; split in frame|take|object
    {root}/weights/{backbone}.json                torchvision backbones: checkpoint file, SHA-256, origin
    {root}/weights/proposers/{proposer}.json      sam proposers with a packaged checkpoint: the same record
    {root}/features/{backbone}/{take}.zarr        Zarr v3 store, one array per camera
    {root}/proposals/{proposer}/{take}.parquet    ego proposals (COCO RLE, box, score) + {take}.recall.parquet
    {root}/proposals/{proposer}/exo/{take}.parquet  exo proposals (ego2exo experiments), per camera + recall
    {root}/experiments/{exp}/train/...            checkpoints/, history.json; {root}/experiments/{exp}/model.pt
    {root}/experiments/{exp}/existence/...        existence: head -- model.pt (+ trained mlp_visible), calibration.json, history.json
    {root}/experiments/{exp}/{subset}/...         predictions.json, ground_truth.json, samples.parquet, metrics.json
    {root}/reference/{split}/{proposer}/{subset}/{predictor}/{samples.parquet,metrics.json}
    {root}/reference/ego2exo/{split}/...          the same for the ego->exo direction (exo proposals)
    {root}/{robustness,motorcycle}/...            photo-pair sets: the same stages (photos/ when generated)
    {root}/report.html
    {root}/logs/..., {root}/benchmarks/...        one log and one benchmark (timing) file per job
    {root}/params/{rule}/.../settings.json        the settings each stage's outputs were made with (see ``params``)
"""

from __future__ import annotations

from dataclasses import dataclass

PHOTO_SETS = ("robustness", "motorcycle")


def source_takes(source: str) -> str:
    """takes.json of a source folder in the Ego-Exo4D layout."""
    return f"{source}/takes.json"


def source_relations(source: str, part: str = "{part}") -> str:
    """The relation annotations of one annotation split (train, val) of a source folder."""
    return f"{source}/annotations/relations_{part}.json"


def source_manifest(source: str) -> str:
    """The video sizes of the takes (egoexo source)."""
    return f"{source}/manifest.json"


@dataclass(frozen=True)
class Layout:
    """The paths of one results tree under ``root``."""

    root: str

    def photo_set(self, rset: str = "{rset}") -> Layout:
        """The results tree of a photo-pair set (robustness, motorcycle), its pairs run as one-frame takes."""
        return Layout(f"{self.root}/{rset}")

    # sources
    @property
    def synthetic(self) -> str:
        return f"{self.root}/synthetic"

    @property
    def source(self) -> str:
        return f"{self.root}/source"

    def synthetic_videos(self) -> str:
        return f"{self.synthetic}/takes"

    def visibility(self) -> str:
        return f"{self.synthetic}/visibility.parquet"

    def photos(self) -> str:
        """Generated photo pairs of a photo-pair set (a user folder replaces them for the robustness set)."""
        return f"{self.root}/photos"

    # data
    def index(self) -> str:
        return f"{self.root}/index/takes.json"

    def index_summary(self) -> str:
        return f"{self.root}/index/summary.json"

    def take_records(self) -> str:
        return f"{self.root}/index/takes"

    def take_record(self, take: str = "{take}") -> str:
        return f"{self.take_records()}/{take}.json"

    def raw(self, take: str = "{take}") -> str:
        return f"{self.root}/raw/{take}"

    def frames(self, take: str = "{take}") -> str:
        return f"{self.root}/frames/{take}"

    def annotation(self, take: str = "{take}") -> str:
        return f"{self.frames(take)}/annotation.json"

    def images(self, take: str = "{take}") -> str:
        return f"{self.frames(take)}/images"

    def image(self, take: str, cam: str, frame: int | str) -> str:
        return f"{self.images(take)}/{cam}/{frame}.jpg"

    def pairs(self) -> str:
        return f"{self.root}/pairs.parquet"

    def pairs_summary(self) -> str:
        return f"{self.root}/pairs.json"

    def split(self, split: str = "{split}") -> str:
        return f"{self.root}/splits/{split}.parquet"

    def split_diagnostics(self, split: str = "{split}") -> str:
        return f"{self.root}/splits/{split}.json"

    # features and proposals
    def weights(self, backbone: str = "{backbone}") -> str:
        return f"{self.root}/weights/{backbone}.json"

    def proposer_weights(self, proposer: str = "{proposer}") -> str:
        """The record of a sam proposer's packaged checkpoint, fetched into the weights cache."""
        return f"{self.root}/weights/proposers/{proposer}.json"

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

    # model
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

    def result(self, name: str, exp: str = "{exp}", subset: str = "{subset}") -> str:
        """One evaluated file of an experiment on a subset: predictions.json, ground_truth.json,
        samples.parquet or metrics.json."""
        return f"{self.experiment(exp)}/{subset}/{name}"

    def reference(
        self,
        name: str,
        split: str = "{split}",
        proposer: str = "{proposer}",
        subset: str = "{subset}",
        predictor: str = "{predictor}",
    ) -> str:
        """One file (samples.parquet, metrics.json) of a reference predictor."""
        return f"{self.root}/reference/{split}/{proposer}/{subset}/{predictor}/{name}"

    def reference_ego2exo(
        self,
        name: str,
        split: str = "{split}",
        proposer: str = "{proposer}",
        subset: str = "{subset}",
        predictor: str = "{predictor}",
    ) -> str:
        """One file of a reference predictor in the ego->exo direction (on the exo proposals)."""
        return self.reference(name, f"ego2exo/{split}", proposer, subset, predictor)

    # report, logs, benchmarks
    def report(self) -> str:
        return f"{self.root}/report.html"

    @property
    def logs(self) -> str:
        return f"{self.root}/logs"

    @property
    def benchmarks(self) -> str:
        return f"{self.root}/benchmarks"

    def log(self, job: str) -> str:
        """The log of one job, ``job`` a path such as ``features/{backbone}/{take}``."""
        return f"{self.logs}/{job}.log"

    def benchmark(self, job: str) -> str:
        """The benchmark (timing) file of one job; its first folder names the stage in the report."""
        return f"{self.benchmarks}/{job}.tsv"

    def params(self, unit: str) -> str:
        """The settings record of a stage's jobs, ``unit`` such as ``features/{backbone}``: the settings its
        outputs were made with, rewritten (new time) only when they change, so a job re-runs when they do
        even without Snakemake's own records (a copied results folder). Each record has a folder of its own:
        Snakemake lists a folder's files once per run, and a record is written while the DAG is built."""
        return f"{self.root}/params/{unit}/settings.json"
