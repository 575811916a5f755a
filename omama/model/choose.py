"""The model's choice among a frame's proposals: the head's cosine scores of every candidate for each source
mask of the frame, the best one, and its confidence (the published rule, or a calibrated existence head)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from omama.direction import Direction
from omama.io import where
from omama.model.batches import batch_features, feature_inputs
from omama.model.calibration import Calibration
from omama.model.head import MatchingHead, candidate_embeddings
from omama.model.setup import Setup
from omama.model.takedata import TakeData


class ModelChooser:
    """Scores every proposal of a frame for each source mask of that frame with the head.


    The confidence is the sigmoid of the best cosine (``existence`` None: the published rule) or, with
    an existence ``Calibration``, the calibrated ``mlp_visible`` presence probability; the sigmoid of
    the best cosine is then kept in ``self.similarity`` by (take, object, exo camera, frame).
    """

    def __init__(self, head: MatchingHead, setup: Setup, existence: Calibration | None = None, *, direction: str):
        self.head, self.setup, self.existence = head, setup, existence
        self.direction = Direction(direction)
        self.similarity: dict[tuple, float] = {}

    def frame_inputs(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[torch.Tensor, ...]:
        """The frame's tensors on the device: source features (B, C, h', w'), destination features (1, C, h, w),
        source masks (B, 1, H', W') and candidate masks (1, N, H, W) at the input resolution."""
        s, d = self.setup, self.direction
        src_size = s.geometry.input_size[d.src_view]
        dst_cam = rows[d.dst_col].iloc[0]
        cand = torch.from_numpy(td.proposal_masks(frame, s.geometry.input_size[d.dst_view], dst_cam))[None]
        src_masks = torch.stack(
            [
                torch.from_numpy(td.source_mask(r.object, c, frame, src_size))[None]
                for r, c in zip(rows.itertuples(), rows[d.src_col])
            ]
        )
        takes = rows.take_uid.tolist()
        batch = {
            **feature_inputs(s.corpus, "src", takes, rows[d.src_col].tolist(), [frame] * len(rows), s.stored),
            **feature_inputs(s.corpus, "dst", takes[:1], [dst_cam], [frame], s.stored),
        }
        src_feat, dst_feat = batch_features(batch, s.backbone)
        return tuple(x.to(s.device) for x in (src_feat, dst_feat, src_masks, cand))

    def match(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine scores (B, N) of the frame's proposals for each row, and the projected descriptors
        of the sources (B, D) and of the candidates (B, N, D)."""
        with torch.no_grad():
            q, t = candidate_embeddings(self.head, *self.frame_inputs(td, rows, frame))
        scores = (q * t).sum(-1)
        if not torch.isfinite(scores).all():
            dst_cam = rows[self.direction.dst_col].iloc[0]
            raise ValueError(
                f"non-finite matching scores (NaN or inf) for {where(td.take, cam=dst_cam, frame=frame)}: the head's "
                "weights or the features hold NaN or inf"
            )
        return scores, q[:, 0], t

    def __call__(self, td: TakeData, rows: pd.DataFrame, frame: int) -> tuple[np.ndarray, np.ndarray]:
        scores, q, t = self.match(td, rows, frame)
        best, idx = scores.max(dim=1)
        similarity = torch.sigmoid(best).cpu().numpy()
        if self.existence is None:
            return idx.cpu().numpy(), similarity
        with torch.no_grad():
            conf = self.existence.probability(self.head.visibility(q, t[torch.arange(len(rows)), idx]))
        for r, sim in zip(rows.itertuples(), similarity):
            self.similarity[(td.take, r.object, r.exo_cam, int(frame))] = float(sim)
        return idx.cpu().numpy(), conf.cpu().numpy()
