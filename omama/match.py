"""One photo pair, one command: ``omama match`` runs an exo photo + object mask and an ego photo
through a trained experiment (its backbone, proposer and head) and writes the predicted ego mask.

It is the robustness path on a one-pair folder: ``convert_pair`` -> ``extract_features`` ->
``propose_take`` -> ``write_pairs`` -> ``write_split`` -> ``predict_experiment``, in a temporary
folder, with the experiment's ``model.pt`` from a pipeline run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from omama.layout import Layout

OBJECT = "object"
PAIR = "pair"


class NotTrainedError(FileNotFoundError):
    """The experiment's model.pt is missing; the message names it and the command that builds it."""


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
    config: dict, experiment: str, results: str | Path | None, config_path: str | Path
) -> tuple[Path | None, Path | None]:
    """The experiment's trained head and, with ``existence: head``, its calibration; a clear error naming
    the file and the snakemake command when one is missing, or when the experiment is not exo->ego."""
    if experiment not in config["experiments"]:
        raise ValueError(f"unknown experiment {experiment!r} in {config_path}; known: {sorted(config['experiments'])}")
    x = config["experiments"][experiment]
    if x["direction"] != "exo2ego":
        raise ValueError(
            f"experiment {experiment!r} is {x['direction']}; omama match carries an exo mask into the "
            "ego photo (exo2ego experiments only)"
        )
    layout = Layout(str(results or config["results"]))
    if x["matcher"] == "cosine":
        return None, None  # the training-free matcher has no weights
    if x["existence"] == "head":
        files = Path(layout.existence("model.pt", experiment)), Path(layout.existence("calibration.json", experiment))
    else:
        files = Path(layout.model(experiment)), None
    for path in filter(None, files):
        if not path.is_file():
            configfile = "" if Path(config_path).name == "config.yaml" else f" --configfile {shlex.quote(str(config_path))}"
            raise NotTrainedError(
                f"experiment {experiment!r} has no trained head yet: {path} is missing. Build it with:\n"
                f"  snakemake --cores 4{configfile} {path}"
            )
    return files


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
) -> dict:
    """Predict the ego mask of the object ``mask`` marks in ``exo``; write ``out`` (0/255 PNG at the ego
    photo's displayed size), ``<out stem>.overlay.png`` and ``<out stem>.json``; returns the JSON record."""
    from omama.data.masks import decode_rle
    from omama.data.pairs import write_pairs
    from omama.data.photos import CAMS, EGO, FRAME, convert_pair, load_photo, write_index
    from omama.data.splits import write_split
    from omama.evaluation.predict import predict_experiment
    from omama.features.store import extract_features
    from omama.io import read_json, write_json
    from omama.proposals.proposers import propose_take

    cfg = load_config(config)
    head, calibration = model_files(cfg, experiment, results, config)
    if cfg["torch_home"]:  # the run's torchvision checkpoint cache, as the workflow sets it for its jobs
        os.environ["TORCH_HOME"] = os.path.abspath(cfg["torch_home"])
    x = cfg["experiments"][experiment]
    backbone_cfg, proposer_cfg = dict(cfg["backbones"][x["backbone"]]), dict(cfg["proposers"][x["proposer"]])
    if device:
        backbone_cfg["device"] = proposer_cfg["device"] = device
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="omama-match-") as tmp:
        tmp = Path(tmp)
        pair_dir = tmp / "photos" / PAIR
        (pair_dir / "masks").mkdir(parents=True)
        for view, src in (("exo", Path(exo)), ("ego", Path(ego))):
            if not src.is_file():
                raise FileNotFoundError(f"{view} photo {src} not found")
            shutil.copy(src, pair_dir / f"{view}{src.suffix.lower()}")
        shutil.copy(mask, pair_dir / "masks" / f"{OBJECT}.exo.png")
        write_index(folder=tmp / "photos", out_takes=tmp / "index.json")
        frames = tmp / "frames" / PAIR
        convert_pair(pair_dir=pair_dir, annotation_out=frames / "annotation.json", images_out=frames / "images")
        store = tmp / "features" / f"{PAIR}.zarr"
        extract_features(
            annotation_json=frames / "annotation.json",
            images_dir=frames / "images",
            out_store=store,
            backbone_cfg=backbone_cfg,
            name=x["backbone"],
        )
        proposals = tmp / "proposals" / f"{PAIR}.parquet"
        propose_take(
            annotation_json=frames / "annotation.json",
            images_dir=frames / "images",
            out_proposals=proposals,
            out_recall=tmp / "proposals" / "recall.parquet",
            proposer_cfg=proposer_cfg,
        )
        write_pairs(
            annotation_paths=[str(frames / "annotation.json")],
            takes_index=tmp / "index.json",
            pairs_out=tmp / "pairs.parquet",
            summary_out=tmp / "pairs.json",
        )
        write_split(
            pairs_path=tmp / "pairs.parquet",
            strategy="take",
            ratios=[0, 0, 1],
            seed=0,
            split_out=tmp / "split.parquet",
            diagnostics_out=tmp / "split.json",
        )
        pred_json = tmp / "predictions.json"
        predict_experiment(
            split_table=tmp / "split.parquet",
            subset="test",
            annotations=[str(frames / "annotation.json")],
            proposals=[str(proposals)],
            features=[str(store)],
            images=None,
            model_path=head,
            backbone_cfg=backbone_cfg,
            mode="pre-extracted",
            predictions_out=pred_json,
            ground_truth_out=tmp / "ground_truth.json",
            samples_out=tmp / "samples.parquet",
            direction="exo2ego",
            calibration=calibration,
            matcher=x["matcher"],
        )
        result = read_json(pred_json, "predictions")["exo-ego"]["results"][PAIR]["masks"][OBJECT]
        entry = result[f"{CAMS['exo']}_{CAMS[EGO]}"][str(FRAME)]
    ego_rgb = load_photo(Path(ego), PAIR, EGO)
    pred = decode_rle(entry["pred_mask"]).astype(np.uint8)
    pred = cv2.resize(pred, (ego_rgb.shape[1], ego_rgb.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    confidence = float(entry["confidence"])
    record = {
        "experiment": experiment,
        "model": str(head) if head else f"none (matcher {x['matcher']})",
        "exo": str(exo),
        "mask": str(mask),
        "ego": str(ego),
        "confidence": confidence,
        "present": confidence > 0.5,
        "mask_pixels": int(pred.sum()),
        "ego_mask": str(out),
        "overlay": str(out.with_name(out.stem + ".overlay.png")),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pred.astype(np.uint8) * 255).save(out)
    write_overlay(Path(exo), Path(mask), ego_rgb, pred, Path(record["overlay"]))
    write_json(out.with_name(out.stem + ".json"), record, indent=1)
    return record


def write_overlay(exo: Path, mask: Path, ego_rgb: np.ndarray, pred: np.ndarray, path: Path) -> None:
    """exo photo with the source mask | ego photo with the prediction (the report's colours)."""
    from omama.data.photos import EXO, load_mask, load_photo
    from omama.report.overlays import COLOURS, blend, panel_row

    exo_rgb = load_photo(exo, PAIR, EXO)
    src = load_mask(mask, exo_rgb.shape[:2], PAIR, OBJECT, EXO)
    Image.fromarray(panel_row([blend(exo_rgb, src, COLOURS["exo"]), blend(ego_rgb, pred, COLOURS["pred"])], height=360)).save(
        path
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omama", description="omama command line")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("match", help="predict the ego mask of one exo object mask with a trained experiment")
    m.add_argument("--experiment", required=True, help="experiment name in the config (its model.pt must exist)")
    m.add_argument("--exo", required=True, help="exo photo (jpg/png)")
    m.add_argument("--mask", required=True, help="object mask on the exo photo (png, white = object)")
    m.add_argument("--ego", required=True, help="ego photo (jpg/png)")
    m.add_argument("-o", "--out", required=True, help="predicted ego mask (png); .overlay.png and .json beside it")
    m.add_argument("--results", default=None, help="results folder of the pipeline run (default: the config's)")
    m.add_argument("--config", default="config.yaml", help="pipeline config (default config.yaml)")
    m.add_argument("--device", default=None, help="cpu or cuda (default: the config's)")
    args = parser.parse_args(argv)
    from omama.weights import WeightsError

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
        )
    except (FileNotFoundError, ValueError, WeightsError) as e:
        print(f"omama match: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: r[k] for k in ("confidence", "present", "mask_pixels", "ego_mask", "overlay")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
