"""The built-in dataset kinds: egoexo, local, synthetic (the Ego-Exo4D layout), photos, motorcycle and bop.

A dataset is a set of takes in the per-take layout every later stage reads (``frames/<take>/annotation.json``
and ``images/<cam>/<frame>.jpg``, see ``omama.data.extract``). A dataset kind registers
(``@DATASETS.register``) a class with:

- ``name`` and ``schema``: its own settings (a JSON-schema fragment with their defaults), validated with the
  settings every dataset has (``datasets.<name>`` in the config schema);
- ``problems(name, cfg)``: what stops a run before its first job (a missing folder, missing credentials);
- ``prepares(cfg)`` / ``prepare(cfg, out_dir, timeout=)``: whether a ``prepare`` job writes its source first
  (generated takes or photos, downloaded metadata), and how; ``root(cfg, prepared)``: the folder the take
  index reads (the prepared one, or the user's); ``index_inputs(cfg, root)``: the files whose change re-indexes;
- ``index(cfg, root, takes_out=, records_dir=, summary_out=)``: the take index (every take left out counted);
- ``fetches`` / ``fetch(cfg, root, record, out_dir, timeout=)``: whether a ``download`` job brings each take's
  raw files first (deleted once extracted), and how; ``take_inputs(cfg, root, record)``: the source files of
  one take whose change re-extracts it;
- ``extract(cfg, root, record, raw, annotation_out=, images_out=)``: one take into the per-take layout;
- ``reads``: the settings each stage (prepare, take_index, download, extract) reads, by top-level key (a stage
  not listed reads every setting but ``split``): a job's params and settings record hold these only, so a
  changed setting re-runs the stages that read it and no other (``settings(cfg, stage)``);
- ``visibility``: whether its prepared source holds ground-truth visibility (``visibility.parquet``: the
  report's occlusion breakdown); ``max_side(cfg)``: the longest image side its frames can have (preflight's
  memory estimate of proposals), None when unbounded or unknown.

Light (the Snakefile imports it through the registry): the stages' modules are imported in the methods.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from omama.registry import DATASETS

# The Ego-Exo4D layout's selection and frame extraction, shared by egoexo, local and synthetic.
EGOEXO_LAYOUT = yaml.safe_load(
    """
    selection:
      description: "which takes and frames of the source are processed"
      type: object
      additionalProperties: false
      default: {}
      properties:
        scenarios: {type: array, items: {type: string}, default: [], description: "parent or fine-grained task names; empty = all"}
        take_limit: {type: [integer, "null"], minimum: 1, default: null, description: "at most this many takes (seeded choice); null = all"}
        frame_fraction: {type: number, exclusiveMinimum: 0, maximum: 1, default: 1.0, description: "share of annotated frames kept per take (seeded)"}
        annotation_splits:
          description: "which relations_{split}.json files takes come from (split official keeps each take in its file's subset)"
          type: array
          items: {type: string, enum: [train, val, test]}
          minItems: 1
          uniqueItems: true
          default: [train, val]
        exclude_takes: {type: array, items: {type: string}, uniqueItems: true, default: [], description: "take uids left out (counted in the report's skip table), e.g. a take whose download keeps failing"}
        seed: {type: integer, default: 0, description: "seeds the take limit and the frame fraction"}
    frames:
      description: "frame extraction"
      type: object
      additionalProperties: false
      default: {}
      properties:
        ego_scale: {$ref: "#/definitions/scale", default: auto, description: "auto: 1/2 for full-resolution sources, 1 for downscaled; or a number in (0, 1]"}
        exo_scale: {$ref: "#/definitions/scale", default: auto, description: "auto: 1/4 for full-resolution sources, 1 for downscaled; or a number in (0, 1]"}
        jpeg_quality: {type: integer, minimum: 50, maximum: 100, default: 95, description: "JPEG quality of the written frames"}
        skip_bad_masks: {type: boolean, default: false, description: "true: undecodable masks become counted skips instead of errors"}
    """
)
MAX_SIDE = yaml.safe_load(
    """
    type: [integer, "null"]
    minimum: 32
    default: 480
    description: >-
      longer side (px) of the working copy of each photo (and of omama match's photos): proposals and features
      are computed on the photo downscaled to at most this (cv2.INTER_AREA, as frames are scaled), which bounds
      their time and memory; the masks stay at the photo's size, where they are scored (at the evaluator's longer
      side, 480). null = the photo's own size
    """
)


class DatasetKind:
    """What every dataset kind provides (defaults for the optional parts)."""

    name: str = ""
    schema: dict = {"properties": {}}
    fetches: bool = False
    visibility: bool = False
    reads: dict[str, tuple[str, ...]] = {}

    def settings(self, cfg: dict, stage: str) -> dict:
        """The part of a dataset entry ``stage`` reads: its kind and the keys in ``reads`` (every key but the
        split's, which only the split reads, when the stage is not listed)."""
        keys = self.reads.get(stage)
        return {k: v for k, v in cfg.items() if k == "kind" or (k in keys if keys is not None else k != "split")}

    def problems(self, name: str, cfg: dict) -> list[str]:
        return []

    def prepares(self, cfg: dict) -> bool:
        return False

    def prepare(self, cfg: dict, out_dir: Path, *, timeout: float) -> None:
        raise NotImplementedError(f"dataset kind {self.name!r} prepares nothing")

    def root(self, cfg: dict, prepared: str) -> str:
        """The folder the take index reads: the prepared source, or the user's ``path``."""
        return prepared if self.prepares(cfg) else cfg["path"]

    def index_inputs(self, cfg: dict, root: str) -> list[str]:
        """The source files the take index reads (a prepared source is one folder: the prepare job's output)."""
        return [root]

    def index(self, cfg: dict, root: str, *, takes_out, records_dir, summary_out) -> list[dict]:
        raise NotImplementedError

    def fetch(self, cfg: dict, root: str, record: dict, out_dir, *, timeout: float) -> None:
        raise NotImplementedError(f"dataset kind {self.name!r} fetches nothing")

    def take_inputs(self, cfg: dict, root: str, record: dict) -> list[str]:
        return []

    def extract(self, cfg: dict, root: str, record: dict, raw, *, annotation_out, images_out) -> None:
        raise NotImplementedError

    def max_side(self, cfg: dict) -> int | None:
        return None


def write_records(records: list[dict], skipped: list[dict], reasons: dict, *, root, takes_out, records_dir, summary_out):
    """A take index of ``records`` (lean list, one record file each) and its summary of what was left out."""
    from omama.data.takes import write_if_changed, write_index

    if not records:
        raise ValueError(f"no take selected from {root} (left out: {reasons})")
    for r in records:
        write_if_changed(Path(records_dir) / f"{r['take_uid']}.json", r)
    seen = len(records) + sum(reasons.values())
    write_index(records, reasons, skipped, root=root, seen=seen, takes_out=takes_out, summary_out=summary_out)
    return records


class EgoExoLayout(DatasetKind):
    """Takes in the Ego-Exo4D layout: takes.json, annotations/relations_{train,val,test}.json, videos."""

    def problems(self, name: str, cfg: dict) -> list[str]:
        return []

    def index(self, cfg: dict, root: str, *, takes_out, records_dir, summary_out) -> list[dict]:
        from omama.data.takes import build_index
        from omama.layout import source_manifest

        return build_index(
            source_root=root,
            selection=cfg["selection"],
            takes_out=takes_out,
            records_dir=records_dir,
            summary_out=summary_out,
            downscaled=self.downscaled(cfg),
            manifest=source_manifest(root) if self.fetches else None,
        )

    def downscaled(self, cfg: dict) -> bool | None:
        """The 448-px videos (True), the full-resolution ones (False), or what the folder holds (None)."""
        return None

    def extract(self, cfg: dict, root: str, record: dict, raw, *, annotation_out, images_out) -> None:
        from omama.data.extract import extract_take

        extract_take(
            record=record,
            raw_root=raw or root,
            annotation_out=annotation_out,
            images_out=images_out,
            frames_cfg=cfg["frames"],
        )


@DATASETS.register
class EgoExo(EgoExoLayout):
    """The Ego-Exo4D release through its download client (`egoexo`): metadata, annotations and the part's
    manifest by a prepare job, then one take's videos at a time (deleted once its frames are extracted)."""

    name = "egoexo"
    fetches = True
    schema = yaml.safe_load(
        """
        properties:
          egoexo:
            type: object
            additionalProperties: false
            default: {}
            description: "settings of the egoexo download client"
            properties:
              part: {type: string, enum: ["downscaled_takes/448", "takes"], default: "downscaled_takes/448", description: "which videos: downscaled (448 px) or full resolution"}
              release: {type: string, default: v2, description: "Ego-Exo4D release"}
              s3_profile: {type: string, default: default, description: "AWS profile with the Ego-Exo4D credentials"}
              base_dir: {type: [string, "null"], pattern: "^s3://", default: null, description: "s3://bucket/prefix/; null = the client's default"}
              retries: {type: integer, minimum: 0, default: 3, description: "download retries per part"}
              num_workers: {type: integer, minimum: 1, default: 4, description: "parallel downloads of the client"}
        """
    )
    schema["properties"].update(EGOEXO_LAYOUT)
    # metadata for the annotation files selected; the index reads the part (448-px or full-resolution videos)
    reads = {
        "prepare": ("egoexo", "selection"),
        "take_index": ("egoexo", "selection"),
        "download": ("egoexo",),
        "extract": ("frames",),
    }

    def problems(self, name: str, cfg: dict) -> list[str]:
        import importlib.util

        from omama.data.sources import aws_problems

        problems = []
        if importlib.util.find_spec("ego4d") is None:
            problems.append(f"datasets.{name} (kind egoexo) needs the official download client: pip install ego4d")
        return problems + aws_problems(cfg["egoexo"]["s3_profile"], f"datasets.{name}.egoexo.s3_profile")

    def prepares(self, cfg: dict) -> bool:
        return True

    def prepare(self, cfg: dict, out_dir: Path, *, timeout: float) -> None:
        from omama.data.sources import fetch_metadata
        from omama.io import atomic_path

        with atomic_path(out_dir) as tmp:
            fetch_metadata(out_dir=tmp, cfg=cfg["egoexo"], timeout=timeout, splits=cfg["selection"]["annotation_splits"])

    def downscaled(self, cfg: dict) -> bool:
        return cfg["egoexo"]["part"] == "downscaled_takes/448"

    def fetch(self, cfg: dict, root: str, record: dict, out_dir, *, timeout: float) -> None:
        from omama.data.sources import download_take

        download_take(record=record, source={"kind": "egoexo", "egoexo": cfg["egoexo"]}, source_root=root, out_dir=out_dir)


@DATASETS.register
class Local(EgoExoLayout):
    """A copy of Ego-Exo4D in its own layout (``path``): videos read where they are; a partial copy's missing
    takes are counted skips."""

    name = "local"
    schema = yaml.safe_load(
        """
        required: [path]
        properties:
          path: {type: string, description: "folder in the Ego-Exo4D layout (takes.json, annotations/, takes/<take_name>/frame_aligned_videos/)"}
        """
    )
    schema["properties"].update(EGOEXO_LAYOUT)
    reads = {"take_index": ("path", "selection"), "extract": ("path", "frames")}

    def problems(self, name: str, cfg: dict) -> list[str]:
        root = Path(cfg["path"])
        if not root.is_dir():
            return [
                f"datasets.{name}.path {str(root)!r} (kind local) does not exist: point it at a folder in the "
                f"Ego-Exo4D layout (takes.json, annotations/, takes/<take_name>/frame_aligned_videos/)"
            ]
        files = ("takes.json", *(f"annotations/relations_{s}.json" for s in cfg["selection"]["annotation_splits"]))
        return [f"datasets.{name}.path {str(root)!r} (kind local) lacks {f}" for f in files if not (root / f).is_file()]

    def index_inputs(self, cfg: dict, root: str) -> list[str]:
        from omama.layout import source_relations, source_takes

        return [source_takes(root), *(source_relations(root, s) for s in cfg["selection"]["annotation_splits"])]

    def take_inputs(self, cfg: dict, root: str, record: dict) -> list[str]:
        """The take's videos: replacing one re-extracts the take."""
        return [f"{root}/{rel}" for rel in record["videos"].values()]


@DATASETS.register
class Synthetic(Local):
    """Rendered tabletop takes written in the exact Ego-Exo4D layout by a prepare job (omama.synthetic)."""

    name = "synthetic"
    visibility = True
    schema = yaml.safe_load(
        """
        properties:
          synthetic:
            description: "the generated takes"
            type: object
            additionalProperties: false
            default: {}
            properties:
              seed: {type: integer, default: 0, description: "seeds the scenes"}
              takes: {type: integer, minimum: 1, default: 6, description: "number of takes"}
              seconds: {type: integer, minimum: 1, default: 6, description: "annotated frames per take (one per second: frames 0, 30, ...)"}
              exo_cameras: {type: integer, minimum: 2, default: 2, description: "exo cameras per take"}
              ego_size: {type: integer, minimum: 32, default: 224, description: "side of the square ego frames (px)"}
              exo_size:
                description: "(height, width) of the exo frames (px)"
                type: array
                items: {type: integer, minimum: 18}
                minItems: 2
                maxItems: 2
                default: [224, 398]
              objects: {type: integer, minimum: 2, default: 5, description: "objects on the table per take"}
              val_fraction: {type: number, minimum: 0, maximum: 1, default: 0.34, description: "share of takes written to relations_val.json"}
              test_fraction: {type: number, minimum: 0, maximum: 1, default: 0.0, description: "share of takes written to relations_test.json (drawn from the takes not in val; the rest go to relations_train.json)"}
              withhold_test:
                type: string
                enum: [none, ego, exo]
                default: none
                description: >-
                  write the test takes as the challenge has at times released them: that view's camera entries keep their
                  annotated_frames but have no masks (its masks are scored by the challenge server); none = every mask written
              empty_takes: {type: integer, minimum: 0, default: 1, description: "extra takes (train split) with videos but an empty object_masks, as some Ego-Exo4D takes have; the take index counts and skips them"}
              official_scale:
                type: [number, "null"]
                exclusiveMinimum: 0
                maximum: 1
                default: null
                description: >-
                  the challenge's official take split (821 / 201 / 295 takes in relations_{train,val,test}.json) scaled by
                  this share, each at least 1 take: it replaces takes, val_fraction and test_fraction. null = those three
        """
    )
    schema["properties"].update(EGOEXO_LAYOUT)
    reads = {**Local.reads, "prepare": ("synthetic",)}

    def problems(self, name: str, cfg: dict) -> list[str]:
        return []

    def prepares(self, cfg: dict) -> bool:
        return True

    def prepare(self, cfg: dict, out_dir: Path, *, timeout: float) -> None:
        import os

        from omama.synthetic.dataset import generate_dataset

        # The first job of its dataset (nothing else of it can run meanwhile): takes rendered on every core.
        generate_dataset(out_dir, cfg["synthetic"], workers=len(os.sched_getaffinity(0)))

    def index_inputs(self, cfg: dict, root: str) -> list[str]:
        return [root]

    def take_inputs(self, cfg: dict, root: str, record: dict) -> list[str]:
        return []  # the generated videos change only with the prepare job's settings


class PhotoPairs(DatasetKind):
    """Photo-pair folders (``<pair>/{exo,ego}.<image>``, ``<pair>/masks/<object>.{exo,ego}.png``), each pair a
    one-frame take (omama.data.photos); photos are worked on at most ``max_side`` px."""

    def index(self, cfg: dict, root: str, *, takes_out, records_dir, summary_out) -> list[dict]:
        from omama.data.photos import list_pairs, take_record

        records = [take_record(p) for p in list_pairs(root)]
        return write_records(records, [], {}, root=root, takes_out=takes_out, records_dir=records_dir, summary_out=summary_out)

    def take_inputs(self, cfg: dict, root: str, record: dict) -> list[str]:
        """The files of one pair: editing a photo or mask re-converts that pair (a folder's own time does not
        change when a file inside it does)."""
        return sorted(str(p) for p in Path(root, record["take_uid"]).rglob("*") if p.is_file())

    def extract(self, cfg: dict, root: str, record: dict, raw, *, annotation_out, images_out) -> None:
        from omama.data.photos import convert_pair

        convert_pair(
            pair_dir=Path(root) / record["take_uid"],
            annotation_out=annotation_out,
            images_out=images_out,
            jpeg_quality=cfg["jpeg_quality"],
            max_side=cfg["max_side"],
        )

    def max_side(self, cfg: dict) -> int | None:
        return cfg["max_side"]


@DATASETS.register
class Photos(PhotoPairs):
    """Your own photo pairs (``path``), or ``synthetic_pairs`` generated ones when ``path`` is null."""

    name = "photos"
    schema = yaml.safe_load(
        """
        properties:
          path: {type: [string, "null"], default: null, description: "folder of photo pairs; null = generate synthetic_pairs of them"}
          synthetic_pairs: {type: integer, minimum: 1, default: 4, description: "generated photo pairs when path is null"}
          synthetic_photos:
            type: object
            additionalProperties: false
            default: {}
            description: sizes and JPEG quality of the generated photo pairs
            properties:
              exo_size:
                type: array
                items: {type: integer, minimum: 18}
                minItems: 2
                maxItems: 2
                default: [270, 480]
                description: "[height, width] of the landscape exo photos (pair 0's exo photo is the portrait transpose)"
              ego_size: {type: integer, minimum: 32, default: 288, description: "side of the square ego photos (px)"}
              jpeg_quality: {type: integer, minimum: 50, maximum: 100, default: 92, description: "JPEG quality of the photos"}
          seed: {type: integer, default: 0, description: "seeds the generated photo pairs"}
          jpeg_quality: {type: integer, minimum: 50, maximum: 100, default: 95, description: "JPEG quality of the working copies"}
        """
    )
    schema["properties"]["max_side"] = MAX_SIDE
    reads = {
        "prepare": ("synthetic_pairs", "synthetic_photos", "seed"),
        "take_index": ("path",),
        "extract": ("path", "jpeg_quality", "max_side"),
    }

    def problems(self, name: str, cfg: dict) -> list[str]:
        path = cfg["path"]
        if path and not Path(path).is_dir():
            return [
                f"datasets.{name}.path {path!r} does not exist: put the photo pairs there (<pair>/exo.jpg, "
                f"<pair>/ego.jpg, <pair>/masks/<object>.exo.png and .ego.png) or set it to null"
            ]
        return []

    def prepares(self, cfg: dict) -> bool:
        return cfg["path"] is None

    def prepare(self, cfg: dict, out_dir: Path, *, timeout: float) -> None:
        from omama.synthetic.photos import write_photo_pairs

        p = cfg["synthetic_photos"]
        write_photo_pairs(
            out_dir,
            n=cfg["synthetic_pairs"],
            seed=cfg["seed"],
            exo_size=p["exo_size"],
            ego_size=p["ego_size"],
            jpeg_quality=p["jpeg_quality"],
        )


@DATASETS.register
class Motorcycle(PhotoPairs):
    """Real photographs: the Middlebury 2014 motorcycle stereo pair that ships with scikit-image, its object
    masks carried between the views by the true disparity (omama.data.stereo), plus moved-camera views."""

    name = "motorcycle"
    schema = yaml.safe_load(
        """
        properties:
          width: {type: integer, minimum: 96, default: 300, description: "the pair is downscaled to this width (px)"}
          objects: {type: integer, minimum: 2, default: 8, description: "at most this many object segments"}
          views: {type: integer, minimum: 0, default: 4, description: "moved-camera pairs: the other view through a seeded homography (turned, tilted, closer) as a square ego frame"}
          seed: {type: integer, default: 0, description: "seed of the moved-camera homographies"}
          jpeg_quality: {type: integer, minimum: 50, maximum: 100, default: 95, description: "JPEG quality of the working copies"}
        """
    )
    schema["properties"]["max_side"] = MAX_SIDE
    reads = {"prepare": ("width", "objects", "views", "seed"), "take_index": (), "extract": ("jpeg_quality", "max_side")}

    def prepares(self, cfg: dict) -> bool:
        return True

    def prepare(self, cfg: dict, out_dir: Path, *, timeout: float) -> None:
        from omama.data.stereo import write_motorcycle_pairs

        write_motorcycle_pairs(out_dir, **{k: cfg[k] for k in ("width", "objects", "views", "seed")})


@DATASETS.register
class Bop(DatasetKind):
    """A dataset in the BOP scenewise format (as HANDAL): a scene is a take, each pair of its images (the second
    ``gap`` images after the first) a frame with two cameras (omama.data.bop); ``path`` null writes synthetic
    scenes in that format (omama.synthetic.bop)."""

    name = "bop"
    schema = yaml.safe_load(
        """
        properties:
          path: {type: [string, "null"], default: null, description: "the dataset's folder (<split>/<scene>/rgb|gray/, mask_visib/, scene_gt.json, scene_gt_info.json, scene_camera.json); null = synthetic scenes written in the BOP format"}
          bop_split: {type: string, default: test, description: "the split folder read (train, test, test_primesense, ...)"}
          scenario: {type: [string, "null"], default: null, description: "the scenario name of its takes; null = the dataset folder's name"}
          gap: {type: integer, minimum: 1, default: 100, description: "pairs image i with the image gap positions later in the scene's sorted image ids (HANDAL-X: 100)"}
          stride: {type: integer, minimum: 1, default: 1, description: "first images of the pairs every stride positions (HANDAL-X: 1)"}
          max_pairs: {type: [integer, "null"], minimum: 1, default: null, description: "at most this many pairs per scene, spread evenly; null = all"}
          min_visib_fract: {type: number, minimum: 0, maximum: 1, default: 0.0, description: "an object is present in a view when its mask is not empty and visib_fract >= this (BOP's own evaluation uses 0.1)"}
          masks: {type: string, enum: [mask_visib, mask], default: mask_visib, description: "mask folder: the visible part, or the whole silhouette (what HANDAL-X's builders read)"}
          labels: {type: object, additionalProperties: {type: string, minLength: 1}, default: {}, description: "obj_id -> object label (default obj_<obj_id:06d>)"}
          jpeg_quality: {type: integer, minimum: 50, maximum: 100, default: 95, description: "JPEG quality of the written frames"}
          synthetic:
            type: object
            additionalProperties: false
            default: {}
            description: "the synthetic scenes written when path is null"
            properties:
              seed: {type: integer, default: 0, description: "seeds the scenes"}
              scenes: {type: integer, minimum: 1, default: 3, description: "scenes"}
              images: {type: integer, minimum: 2, default: 10, description: "images per scene, each from a new camera pose"}
              image_size: {type: integer, minimum: 32, default: 224, description: "side of the square images (px)"}
              objects: {type: integer, minimum: 2, default: 5, description: "objects on the table per scene"}
              image_format: {type: string, enum: [png, jpg], default: png, description: "file format of the rgb images"}
        """
    )

    # the synthetic scenes and the split folder they are written to; the scenes' pairs and objects (the
    # settings the index puts in each take's record for extraction); the frames' quality
    reads = {
        "prepare": ("synthetic", "bop_split"),
        "take_index": ("path", "bop_split", "scenario", "gap", "stride", "max_pairs", "min_visib_fract", "masks", "labels"),
        "extract": ("path", "jpeg_quality"),
    }

    def problems(self, name: str, cfg: dict) -> list[str]:
        path = cfg["path"]
        if path is None:
            return []
        if not (Path(path) / cfg["bop_split"]).is_dir():
            return [
                f"datasets.{name}.path {path!r} has no split folder {cfg['bop_split']!r} (datasets.{name}.bop_split): "
                f"point it at a BOP dataset (e.g. a HANDAL download, see the README)"
            ]
        return []

    def prepares(self, cfg: dict) -> bool:
        return cfg["path"] is None

    def prepare(self, cfg: dict, out_dir: Path, *, timeout: float) -> None:
        from omama.synthetic.bop import write_dataset

        write_dataset(out_dir, {**cfg["synthetic"], "split": cfg["bop_split"]})

    def index(self, cfg: dict, root: str, *, takes_out, records_dir, summary_out) -> list[dict]:
        from omama.data.bop import list_scenes, scene_record

        records, skipped, reasons = [], [], {}
        for scene in list_scenes(root, cfg["bop_split"]):
            record = scene_record(root, cfg["bop_split"], scene, cfg)
            if not record["frames"]:
                reason = f"scene with fewer than gap + 1 = {cfg['gap'] + 1} images"
                reasons[reason] = reasons.get(reason, 0) + 1
                skipped.append({"take_uid": record["take_uid"], "take_name": record["take_name"], "reason": reason})
                continue
            records.append(record)
        return write_records(
            records, skipped, reasons, root=root, takes_out=takes_out, records_dir=records_dir, summary_out=summary_out
        )

    def extract(self, cfg: dict, root: str, record: dict, raw, *, annotation_out, images_out) -> None:
        from omama.data.bop import convert_scene

        convert_scene(
            record=record, root=root, annotation_out=annotation_out, images_out=images_out, jpeg_quality=cfg["jpeg_quality"]
        )
