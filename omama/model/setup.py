"""What training and prediction of one experiment share: the device, the takes, the feature source and the
geometry it implies, and the matching head built for that geometry.

The feature mode (the stores, or the frozen backbone on the frames) is the experiment's
(``omama.experiment.Experiment.feature_mode``): ``Setup.backbone`` is None for stored features; the
training batches and the predictor follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omama.direction import Direction
from omama.experiment import Experiment, Inputs
from omama.model.head import CosineMatcher, MatchingHead, load_checkpoint
from omama.model.takedata import Corpus, Geometry

INIT_SEED = 42  # seeds the initial weights of a head that is not trained (train: null); train.seed otherwise


@dataclass(frozen=True)
class Setup:
    device: torch.device
    corpus: Corpus
    geometry: Geometry
    backbone: object | None  # omama.features.backbones.Backbone for on-the-fly features; None: read the stores

    @property
    def stored(self) -> bool:
        return self.backbone is None


def setup(experiment: Experiment, inputs: Inputs) -> Setup:
    """The device, the takes' data (with the exo proposals for ego2exo), and the backbone (on the fly) or the
    stores' geometry (stored)."""
    device = torch.device(experiment.backbone["device"])
    corpus = Corpus(inputs.annotations, inputs.proposals, inputs.features, inputs.images, inputs.exo_proposals)
    if not experiment.on_the_fly:
        return Setup(device, corpus, corpus.geometry(), None)
    from omama.features.backbones import load_backbone  # heavy: only when features are computed here

    backbone = load_backbone(experiment.backbone, device)
    return Setup(device, corpus, Geometry.from_description(backbone.describe()), backbone)


def build_head(geometry: Geometry, weights=None, seed: int = INIT_SEED, *, direction: str) -> MatchingHead:
    """A head for ``geometry`` in ``direction`` with seeded initial weights (the global RNG is left
    as it was), or the weights of the state dict ``weights`` (strict). The source grid is the
    source view's, the destination grid (``pos_embed_T``) the other view's."""
    d = Direction(direction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = MatchingHead(
            src_grid=geometry.grid[d.src_view], dst_grid=geometry.grid[d.dst_view], in_channels=geometry.channels
        )
    if weights:
        load_checkpoint(head, weights)
    return head


def trained_head(experiment: Experiment, inputs: Inputs) -> tuple[Setup, MatchingHead | CosineMatcher]:
    """The ``setup`` of an experiment's inputs and its head with the weights of ``inputs.model``, on the
    device, in eval mode (``matcher: cosine``: the training-free matcher, which has no weights)."""
    s = setup(experiment, inputs)
    if experiment.matcher == "cosine":
        return s, CosineMatcher().eval()
    return s, build_head(s.geometry, inputs.model, direction=experiment.direction).to(s.device).eval()
