"""Kinds as plug-ins: a dataset kind, a backbone kind and a proposer kind registered by a module this test
writes (nothing of omama/ or workflow/ edited), run through the real workflow end to end."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest
from conftest import run_snakemake

from omama.layout import Layout

# A module of kinds of its own, as a user would write one: tiny, seeded, deterministic.
PLUGIN = textwrap.dedent(
    '''
    """Coloured squares on grey: a dataset kind, a backbone of colour means, a proposer of connected regions."""

    import json
    from pathlib import Path

    import cv2
    import numpy as np
    import torch
    from torch import nn

    from omama.data.kinds import DatasetKind, write_records
    from omama.data.masks import encode_rle
    from omama.features.kinds import BackboneKind
    from omama.io import atomic_path, write_json
    from omama.layout import frame_file
    from omama.proposals.kinds import ProposerKind
    from omama.registry import BACKBONES, DATASETS, PROPOSERS

    EGO, EXO = "aria_ego", "exo"
    COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


    def scene(take: int, frame: int, size: int, view: str):
        """(image, {object: mask}) of one view: squares placed by a seeded generator, one per quadrant; the ego
        view is mirrored."""
        rng = np.random.default_rng([take, frame])
        img = np.full((size, size, 3), 120, np.uint8)
        masks = {}
        for k, colour in enumerate(COLOURS):  # one square per quadrant, apart from the others
            y, x = (k // 2) * size // 2 + rng.integers(2, size // 4 - 2), (k % 2) * size // 2 + rng.integers(2, size // 4 - 2)
            m = np.zeros((size, size), bool)
            m[y : y + size // 4, x : x + size // 4] = True
            if view == EGO:
                m = m[:, ::-1]
            img[m] = colour
            masks[f"square_{k}"] = m
        return img, masks


    @DATASETS.register
    class Squares(DatasetKind):
        name = "squares"
        schema = {"properties": {"takes": {"type": "integer", "minimum": 1, "default": 3}, "size": {"type": "integer", "default": 64}}}

        def prepares(self, cfg):
            return True

        def prepare(self, cfg, out_dir, *, timeout):
            with atomic_path(out_dir) as tmp:
                tmp.mkdir(parents=True)
                (tmp / "takes.txt").write_text("\\n".join(f"sq{t}" for t in range(cfg["takes"])))

        def index(self, cfg, root, *, takes_out, records_dir, summary_out):
            uids = Path(root, "takes.txt").read_text().split()
            records = [
                {"take_uid": u, "take_name": u, "scenario": "squares", "parent_scenario": "squares",
                 "annotation_split": "test", "ego_cam": EGO, "exo_cams": [EXO], "frames": [0, 30]}
                for u in uids
            ]
            return write_records(records, [], {}, root=root, takes_out=takes_out, records_dir=records_dir, summary_out=summary_out)

        def extract(self, cfg, root, record, raw, *, annotation_out, images_out):
            take = int(record["take_uid"][2:])
            masks, size = {}, cfg["size"]
            with atomic_path(images_out) as tmp:
                for view in (EGO, EXO):
                    (tmp / view).mkdir(parents=True)
                    for f in record["frames"]:
                        img, ms = scene(take, f, size, view)
                        cv2.imwrite(str(tmp / view / frame_file(f)), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                        for obj, m in ms.items():
                            masks.setdefault(obj, {}).setdefault(view, {})[str(f)] = encode_rle(m)
            write_json(annotation_out, {
                "take_uid": record["take_uid"], "take_name": record["take_name"], "scenario": "squares",
                "parent_scenario": "squares", "ego_cam": EGO, "exo_cams": [EXO],
                "native_size": {EGO: [size, size], EXO: [size, size]}, "image_size": {EGO: [size, size], EXO: [size, size]},
                "subsample_idx": record["frames"], "masks": masks,
                "annotated_frames": {o: {EGO: record["frames"], EXO: record["frames"]} for o in masks}, "skipped": [],
            })


    class MeanColour(nn.Module):
        """Average colour of each 8x8 patch, through a seeded 1x1 convolution to 8 channels."""

        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(seed)
            self.mix = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            return self.mix(nn.functional.avg_pool2d(x, 8))


    @BACKBONES.register
    class ColourPatches(BackboneKind):
        name = "colour-patches"
        patch = 8

        def load(self, cfg, device):
            from omama.features.backbones import build

            return build(cfg, device, MeanColour(cfg["tiny"]["seed"]), 8, 8, {"architecture": "mean colour, 1x1 mix"})


    @PROPOSERS.register
    class Regions(ProposerKind):
        name = "regions"
        schema = {"properties": {"min_pixels": {"type": "integer", "default": 20}}}

        def load(self, cfg, device, threads):
            def propose(image):
                coloured = np.abs(image.astype(int) - 120).max(axis=2) > 40
                n, labels = cv2.connectedComponents(coloured.astype(np.uint8), connectivity=4)
                masks = [labels == k for k in range(1, n) if (labels == k).sum() >= cfg["min_pixels"]]
                out = np.array(masks, bool).reshape(len(masks), *coloured.shape)
                return out, np.ones(len(masks), np.float32)

            return propose
    '''
)


@pytest.mark.slow
def test_plugin_kinds_run_through_the_workflow(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "square_kinds.py").write_text(PLUGIN)
    cfg = {
        "plugins": ["square_kinds"],
        "datasets": {"squares": {"kind": "squares", "takes": 3}},
        "backbones": {"colours": {"kind": "colour-patches", "weights": "untrained", "ego_grid": [8, 8], "exo_grid": [8, 8]}},
        "proposers": {"regions": {"kind": "regions"}},
        "experiments": {
            "cosine": {
                "dataset": "squares",
                "backbone": "colours",
                "proposer": "regions",
                "split": "take",
                "matcher": "cosine",
            }
        },
        "evaluate": {"references": ["random"]},
    }
    cfg["datasets"]["squares"]["split"] = {"ratios": [0, 0, 1]}
    run_snakemake(tmp_path, cfg, env={"PYTHONPATH": str(tmp_path / "plugins")})
    r = Layout("results")
    m = json.loads((tmp_path / r.result("metrics.json", "cosine", "squares", "test")).read_text())
    assert m["n_present"] == 3 * 2 * 4  # 3 takes x 2 frames x 4 squares, each present in both views
    assert m["iou"] > 0.9  # colour matches colour: every square found
    store = tmp_path / r.data("squares").features("colours", "sq0")
    assert json.loads((store / "zarr.json").read_text())["attributes"]["backbone"]["kind"] == "colour-patches"
    timing = pd.read_parquet(tmp_path / r.timing())
    assert {"prepare", "take_index", "extract", "features", "proposals", "predict", "evaluate"} <= set(timing["rule"])
    assert "squares" in (tmp_path / r.report()).read_text()
