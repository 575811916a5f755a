"""One photo pair, one command: ``omama match`` runs an exo photo + object mask and an ego photo
through a trained experiment (its backbone, proposer and head) and writes the predicted ego mask.

It is a photos dataset's path on a one-pair take: ``convert_files`` -> ``extract_features`` ->
``propose_take`` -> ``write_pairs`` -> ``write_split`` -> ``predict_experiment``, in a temporary
folder, with the experiment's ``model.pt`` from a pipeline run. Every argument is checked before
anything is computed (``check_arguments``): the photos and the mask decode, the device exists, and
the three outputs can be written and are none of the inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from omama.layout import Layout

OBJECT = "object"
PAIR = "pair"
DATASET = "match"  # the one-pair dataset omama match builds in its temporary results tree


class NotTrainedError(FileNotFoundError):
    """The experiment's model.pt is missing; the message names it and the command that builds it."""


class ArgumentError(ValueError):
    """An argument of ``omama match`` cannot work; the message names it and the user's path."""


def load_config(path: str | Path) -> dict:
    """The run's config, checked against the schema with its defaults filled (as the workflow does)."""
    from omama.config import validate

    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} not found (give --config)") from None
    try:
        return validate(cfg)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def model_files(
    config: dict, experiment, results: str | Path | None, config_path: str | Path
) -> tuple[Path | None, Path | None]:
    """The experiment's trained head and, with ``existence: head``, its calibration (``Inputs.from_layout``: the
    files the workflow's predict rule reads); a clear error naming the file and the snakemake command when one is
    missing, or when the experiment is not exo->ego."""
    from omama.experiment import Inputs

    if experiment.direction != "exo2ego":
        raise ValueError(
            f"experiment {experiment.name!r} is {experiment.direction}; omama match carries an exo mask into the "
            "ego photo (exo2ego experiments only)"
        )
    heads = Inputs.from_layout(Layout(str(results or config["results"])), experiment, experiment.dataset, [])
    files = tuple(None if f is None else Path(f) for f in (heads.model, heads.calibration))
    for path in filter(None, files):
        if not path.is_file():
            configfile = "" if Path(config_path).name == "config.yaml" else f" --configfile {shlex.quote(str(config_path))}"
            raise NotTrainedError(
                f"experiment {experiment.name!r} has no trained head yet: {path} is missing. Build it with:\n"
                f"  snakemake --cores 4{configfile} {path}"
            )
    return files


def outputs(out: str | Path) -> dict[str, Path]:
    """The files ``omama match`` writes: the ego mask ``out``, ``<stem>.overlay.png`` and ``<stem>.json``."""
    out = Path(out)
    return {"-o": out, "overlay": out.with_name(out.stem + ".overlay.png"), "record": out.with_name(out.stem + ".json")}


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or (hard links) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def cannot_write(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None when one can; the folder is created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as e:
        return f"{e.strerror or e} ({e.filename or folder})"


def check_arguments(*, inputs: dict[str, Path], out: str | Path, device: str) -> dict[str, Path]:
    """Every problem with the arguments, before anything is computed: the outputs (their folder
    writable, the mask's suffix an image format, none of them a folder or an input) and the device.
    Returns the outputs (see ``outputs``)."""
    from omama.features.backbones import check_device

    files = outputs(out)
    problems = []
    suffix = files["-o"].suffix.lower()
    if suffix not in Image.registered_extensions() or Image.registered_extensions()[suffix] not in Image.SAVE:
        problems.append(f"-o {out}: give the mask a file name with an image suffix such as .png (not {suffix or 'none'!r})")
    for name, path in files.items():
        if path.is_dir():
            problems.append(f"{name} {path} is a folder; give a file name")
        for what, src in inputs.items():
            if src is not None and same_file(path, src):
                problems.append(f"{name} {path} is the {what} {src}: it would be overwritten; write elsewhere")
    if same_file(files["-o"], files["record"]):
        problems.append(f"-o {out}: the mask and its record {files['record']} would be one file")
    why = None if problems else cannot_write(files["-o"].parent)
    if why:
        problems.append(f"-o {out}: cannot write in {files['-o'].parent}: {why}")
    try:
        check_device(device)
    except RuntimeError as e:
        problems.append(f"--device {device}: {e}")
    if problems:
        raise ArgumentError("; ".join(problems))
    return files


class Matcher:
    """``omama match`` with one experiment: its backbone and proposer are loaded on the first pair and kept,
    so one instance matches any number of pairs (``matcher(exo=..., mask=..., ego=..., out=...)``)."""

    def __init__(
        self,
        *,
        experiment: str,
        results: str | Path | None = None,
        config: str | Path = "config.yaml",
        device=None,
        adapt=False,
    ):
        from omama.config import apply_environment
        from omama.experiment import Experiment

        self.config_path = Path(config)
        self.cfg = load_config(config)
        x = Experiment.resolve(self.cfg, experiment)
        if device:
            x = dataclasses.replace(x, backbone={**x.backbone, "device": device}, proposer={**x.proposer, "device": device})
        if adapt:  # --adapt: the experiment's head adapted to this pair without labels (its adaptation settings)
            x = dataclasses.replace(x, adapt="cycle")
        self.experiment = x
        self.head, self.calibration = model_files(self.cfg, x, results, config)
        apply_environment(self.cfg)  # the run's weights cache, network timeouts and OpenMP waiting, as its jobs
        self._networks = None

    def networks(self):
        """(backbone, proposer), loaded once."""
        if self._networks is None:
            import torch

            from omama.features.backbones import load_backbone
            from omama.proposals.proposers import make_proposer
            from omama.weights import network_timeout

            torch.set_num_threads(self.cfg["compute_threads"])  # the run's numbers: its jobs' thread count
            with network_timeout(self.cfg["network_timeout"]):
                threads = self.cfg["compute_threads"]
                x = self.experiment
                self._networks = load_backbone(x.backbone), make_proposer(x.proposer, threads=threads)
        return self._networks

    def __call__(self, *, exo: str | Path, mask: str | Path, ego: str | Path, out: str | Path) -> dict:
        """Predict the ego mask of the object ``mask`` marks in ``exo``; write ``out`` (0/255 image at the ego
        photo's displayed size), ``<out stem>.overlay.png`` and ``<out stem>.json``; returns the JSON record.

        Every argument is checked first. The photos are processed at the run's working size
        (``match.max_side``), the mask is written at the ego photo's own size."""
        import cv2

        from omama.data.masks import decode_rle
        from omama.data.photos import CAMS, EGO, EXO, FRAME, load_photo
        from omama.io import atomic_path, read_json, write_json

        sources = {"exo photo": Path(exo), "mask": Path(mask), "ego photo": Path(ego)}
        for what, path in sources.items():
            if not path.is_file():
                raise FileNotFoundError(f"{what} {path} not found")
        files = check_arguments(
            inputs={**sources, "config": self.config_path, "trained head": self.head, "calibration": self.calibration},
            out=out,
            device=self.experiment.backbone["device"],
        )
        with tempfile.TemporaryDirectory(prefix="omama-match-") as tmp:
            predictions = self.predict(Path(tmp), Path(exo), Path(mask), Path(ego))
            entry = read_json(predictions, "predictions")["exo-ego"]["results"][PAIR]["masks"][OBJECT]
            entry = entry[f"{CAMS[EXO]}_{CAMS[EGO]}"][str(FRAME)]
        ego_rgb = load_photo(Path(ego), PAIR, EGO)
        pred = decode_rle(entry["pred_mask"]).astype(np.uint8)
        pred = cv2.resize(pred, (ego_rgb.shape[1], ego_rgb.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
        confidence = float(entry["confidence"])
        record = {
            "experiment": self.experiment.name,
            "model": str(self.head) if self.head else "none (the training-free cosine matcher)",
            "exo": str(exo),
            "mask": str(mask),
            "ego": str(ego),
            "confidence": confidence,
            "present": confidence > 0.5,
            "mask_pixels": int(pred.sum()),
            "ego_mask": str(files["-o"]),
            "overlay": str(files["overlay"]),
        }
        with atomic_path(files["-o"]) as tmp:
            Image.fromarray(pred.astype(np.uint8) * 255).save(
                tmp, format=Image.registered_extensions()[files["-o"].suffix.lower()]
            )
        write_overlay(Path(exo), Path(mask), ego_rgb, pred, files["overlay"])
        write_json(files["record"], record, indent=1)
        return record

    def predict(self, tmp: Path, exo: Path, mask: Path, ego: Path) -> Path:
        """The pair as a one-frame take of a dataset in a results tree under ``tmp`` (the workflow's layout),
        through features, proposals, pairs, split and prediction, as the workflow scores a photo pair; the
        predictions file."""
        from omama.data.pairs import write_pairs
        from omama.data.photos import EGO, EXO, convert_files, take_record
        from omama.data.splits import ALL, write_split
        from omama.evaluation.predict import predict_experiment
        from omama.experiment import Inputs
        from omama.features.store import extract_features
        from omama.io import write_json
        from omama.proposals.proposers import propose_take

        x = self.experiment
        layout = Layout(str(tmp))
        d = layout.data(DATASET)
        convert_files(
            pair=PAIR,
            photos={EXO: exo, EGO: ego},
            masks={OBJECT: {EXO: mask}},
            annotation_out=d.annotation(PAIR),
            images_out=d.images(PAIR),
            max_side=self.cfg["match"]["max_side"],
        )
        write_json(d.index(), [take_record(PAIR)])
        backbone, proposer = self.networks()
        extract_features(
            annotation_json=d.annotation(PAIR),
            images_dir=d.images(PAIR),
            out_store=d.features(x.backbone_name, PAIR),
            backbone_cfg=x.backbone,
            backbone=backbone,
            name=x.backbone_name,
        )
        propose_take(
            annotation_json=d.annotation(PAIR),
            images_dir=d.images(PAIR),
            out_proposals=d.proposals(x.proposer_name, PAIR),
            out_recall=d.recall(x.proposer_name, PAIR),
            proposer_cfg=x.proposer,
            proposer=proposer,
        )
        write_pairs(
            annotation_paths=[d.annotation(PAIR)], takes_index=d.index(), pairs_out=d.pairs(), summary_out=d.pairs_summary()
        )
        write_split(
            pairs_path=d.pairs(),
            strategy=ALL,
            ratios=None,
            seed=None,
            split_out=d.split(ALL),
            diagnostics_out=d.split_diagnostics(ALL),
        )
        # the experiment scored on this one-pair dataset, its heads from the run's results
        inputs = dataclasses.replace(
            Inputs.from_layout(layout, x, DATASET, [PAIR]), model=self.head, calibration=self.calibration
        )
        predictions = Path(layout.result("predictions.json", x.name, DATASET, "test"))
        predict_experiment(
            x,
            inputs,
            subset="test",
            predictions_out=predictions,
            ground_truth_out=layout.result("ground_truth.json", x.name, DATASET, "test"),
            samples_out=layout.result("samples.parquet", x.name, DATASET, "test"),
            extra_sources=self.exo_proposals(d) if x.adapt == "cycle" else None,
        )
        return predictions

    def exo_proposals(self, d):
        """The extra sources of ``--adapt``: the exo photo's own proposals (the experiment's proposer on its working
        copy), less those overlapping the given mask (IoU > 0.5): one given object alone closes no cycle."""
        from omama.data.masks import encode_rle
        from omama.data.photos import CAMS, EXO
        from omama.io import load_frame
        from omama.proposals.proposers import mask_iou

        def extra(td, frame, cam):
            image = load_frame(d.image(PAIR, cam, frame), PAIR, cam, frame)
            masks, _ = self.networks()[1](image)
            given = td.source_mask(OBJECT, CAMS[EXO], frame, image.shape[:2])
            overlap = mask_iou([encode_rle(given)], [encode_rle(m) for m in masks])[0]
            return masks[overlap <= 0.5]

        return extra


def match(
    *,
    experiment: str,
    exo: str | Path,
    mask: str | Path,
    ego: str | Path,
    out: str | Path,
    results: str | Path | None = None,
    config: str | Path = "config.yaml",
    device: str | None = None,
    adapt: bool = False,
) -> dict:
    """One pair through a ``Matcher`` (see there); returns the JSON record."""
    matcher = Matcher(experiment=experiment, results=results, config=config, device=device, adapt=adapt)
    return matcher(exo=exo, mask=mask, ego=ego, out=out)


def write_overlay(exo: Path, mask: Path, ego_rgb: np.ndarray, pred: np.ndarray, path: Path, height: int = 360) -> None:
    """exo photo with the source mask | ego photo with the prediction (the report's colours), ``height`` px
    tall (each photo is scaled down before it is tinted, so a large photo costs little)."""
    import cv2

    from omama.data.photos import EXO, load_mask, load_photo
    from omama.io import atomic_path
    from omama.report.overlays import COLOURS, blend, panel_row

    def shown(rgb, m):
        w = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
        small = cv2.resize(rgb, (w, height), interpolation=cv2.INTER_AREA)
        return small, cv2.resize(m.astype(np.uint8), (w, height), interpolation=cv2.INTER_NEAREST).astype(bool)

    exo_rgb = load_photo(exo, PAIR, EXO)
    src = load_mask(mask, exo_rgb.shape[:2], PAIR, OBJECT, EXO)
    panels = [blend(*shown(exo_rgb, src), COLOURS["exo"]), blend(*shown(ego_rgb, pred), COLOURS["pred"])]
    with atomic_path(path) as tmp:
        Image.fromarray(panel_row(panels, height=height)).save(tmp, format="PNG")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omama", description="omama command line")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("match", help="predict the ego mask of one exo object mask with a trained experiment")
    m.add_argument("--experiment", required=True, help="experiment name in the config (its model.pt must exist)")
    m.add_argument("--exo", required=True, help="exo photo (any format OpenCV reads: jpg, png, bmp, tiff, webp, ...)")
    m.add_argument("--mask", required=True, help="object mask on the exo photo (white = object, or the alpha channel)")
    m.add_argument("--ego", required=True, help="ego photo (any format OpenCV reads)")
    m.add_argument("-o", "--out", required=True, help="predicted ego mask (png); .overlay.png and .json beside it")
    m.add_argument("--results", default=None, help="results folder of the pipeline run (default: the config's)")
    m.add_argument("--config", default="config.yaml", help="pipeline config (default config.yaml)")
    m.add_argument("--device", default=None, choices=("cpu", "cuda"), help="cpu or cuda (default: the config's)")
    m.add_argument(
        "--adapt",
        action="store_true",
        help="adapt the head to this pair without labels first (cycle consistency with the exo photo's own proposals; "
        "the confidence becomes the cycle probability)",
    )
    args = parser.parse_args(argv)
    try:
        r = match(
            experiment=args.experiment,
            exo=args.exo,
            mask=args.mask,
            ego=args.ego,
            out=args.out,
            results=args.results,
            config=args.config,
            device=args.device,
            adapt=args.adapt,
        )
    except (OSError, ValueError, RuntimeError) as e:  # WeightsError is a RuntimeError; every message names the file
        print(f"omama match: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: r[k] for k in ("confidence", "present", "mask_pixels", "ego_mask", "overlay")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
