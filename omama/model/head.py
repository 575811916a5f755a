"""The O-MaMa matching head (cross-attention + MLP), with the released checkpoint's names."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from omama.io import load_torch

log = logging.getLogger(__name__)

DIM = 768
TEMPERATURE = 0.07
PRESENT = 1  # mlp_visible output index of "present in the destination view"


class ContextAttention(nn.Module):
    """One cross-attention block: descriptors attend to image tokens, no residual around it."""

    def __init__(self, dim: int = DIM, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.project = nn.Sequential(nn.Linear(dim, dim))
        self.norm_input = nn.LayerNorm(dim)
        self.norm_output = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, desc: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """desc (B, N, D) queries, tokens (B, T, D) keys/values -> (B, N, D)."""
        B, N, D = desc.shape
        T = tokens.shape[1]
        desc = self.norm_input(desc)
        tokens = self.norm_input(tokens)
        q = self.query(desc).view(B, N, self.heads, self.head_dim).transpose(1, 2)
        k = self.key(tokens).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        v = self.value(tokens).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, N, D)
        y = self.project(y)
        return y + self.mlp(self.norm_output(y))


class DescriptorMLP(nn.Module):
    """concat(attention output, 2D descriptor) -> D embedding."""

    def __init__(self, dim: int = DIM):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class MatchingHead(nn.Module):
    """O-MaMa head for one direction, built from the source and destination patch grids.

    ``pos_embed_T`` belongs to the destination grid (keys of the source query), ``pos_embed_Q``
    to the source grid. When the backbone has ``in_channels != 768`` a trainable 1x1 conv
    ``projection`` maps its features to 768 channels (saved in the same state dict).
    """

    def __init__(self, src_grid: tuple[int, int], dst_grid: tuple[int, int], in_channels: int = DIM):
        super().__init__()
        self.src_grid = tuple(int(v) for v in src_grid)
        self.dst_grid = tuple(int(v) for v in dst_grid)
        self.in_channels = int(in_channels)
        self.mlp = DescriptorMLP(DIM)
        self.mlp_visible = nn.Sequential(
            nn.Linear(2 * DIM, DIM),
            nn.ReLU(),
            nn.Linear(DIM, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 2),
        )
        self.CROSS_context_attn = ContextAttention(DIM)
        self.pos_embed_T = nn.Parameter(torch.zeros(1, self.dst_grid[0] * self.dst_grid[1], DIM))
        self.pos_embed_Q = nn.Parameter(torch.zeros(1, self.src_grid[0] * self.src_grid[1], DIM))
        nn.init.trunc_normal_(self.pos_embed_T, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_Q, std=0.02)
        self.projection = None
        if self.in_channels != DIM:
            self.projection = nn.Conv2d(self.in_channels, DIM, kernel_size=1)
            nn.init.xavier_uniform_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, C_in, h, w) -> (B, 768, h, w)."""
        if features.shape[1] != self.in_channels:
            raise ValueError(f"features have {features.shape[1]} channels, the head expects {self.in_channels}")
        return features if self.projection is None else self.projection(features)

    def _tokens(self, grid: torch.Tensor, pos: torch.Tensor, name: str) -> torch.Tensor:
        tokens = grid.flatten(2).transpose(1, 2)
        if tokens.shape[1] != pos.shape[1]:
            raise ValueError(
                f"{name} has {pos.shape[1]} rows but the feature grid {tuple(grid.shape[-2:])} has {tokens.shape[1]} tokens"
            )
        return tokens + pos

    def embed(self, desc: torch.Tensor, other_grid: torch.Tensor, pos: torch.Tensor, name: str) -> torch.Tensor:
        """L2-normalised embeddings of descriptors (B, N, 2D) attending to the other view's grid."""
        ctx = self.CROSS_context_attn(desc[..., :DIM], self._tokens(other_grid, pos, name))
        return F.normalize(self.mlp(torch.cat([ctx, desc], dim=-1)), p=2, dim=-1)

    def embeddings(
        self, src_desc: torch.Tensor, src_grid: torch.Tensor, dst_desc: torch.Tensor, dst_grid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected descriptors: source (B, 1, D) and candidates (B, N, D), L2-normalised.

        src_desc (B, 2D) source descriptors; src_grid (B, D, h', w') projected source features;
        dst_desc (B, N, 2D) candidate descriptors; dst_grid (B, D, h, w) projected destination features.
        """
        q = self.embed(src_desc[:, None], dst_grid, self.pos_embed_T, "pos_embed_T")
        t = self.embed(dst_desc, src_grid, self.pos_embed_Q, "pos_embed_Q")
        return q, t

    def forward(
        self, src_desc: torch.Tensor, src_grid: torch.Tensor, dst_desc: torch.Tensor, dst_grid: torch.Tensor
    ) -> torch.Tensor:
        """Cosine scores (B, N) of the candidates (arguments as in ``embeddings``)."""
        q, t = self.embeddings(src_desc, src_grid, dst_desc, dst_grid)
        return (q * t).sum(-1)

    def visibility(self, src_embedding: torch.Tensor, best_embedding: torch.Tensor) -> torch.Tensor:
        """``mlp_visible`` logits (B, 2) (index ``PRESENT`` = the object is in the destination view) of
        the projected descriptors of the source (B, D) and of its best-matching candidate (B, D)."""
        return self.mlp_visible(torch.cat([src_embedding, best_embedding], dim=-1))


class CosineMatcher(nn.Module):
    """The training-free matcher (``matcher: cosine``): no weights; a candidate's score is the cosine of
    its descriptor [mask | context] pooled from the raw backbone features with the source's, exactly
    the head's input without any projection. Same interface as ``MatchingHead`` for prediction."""

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def embeddings(
        self, src_desc: torch.Tensor, src_grid: torch.Tensor, dst_desc: torch.Tensor, dst_grid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised descriptors: source (B, 1, 2C) and candidates (B, N, 2C); the grids are unused."""
        return F.normalize(src_desc[:, None], p=2, dim=-1), F.normalize(dst_desc, p=2, dim=-1)


def matching_loss(
    scores: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE over candidates (cosine / 0.07), zero for absent objects, mean over the batch.

    scores (B, N); target (B,) index of the positive; visible (B,) 0/1; valid (B, N) bool marks
    real candidates (padded slots get no probability mass).
    """
    logits = scores / TEMPERATURE
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    loss = F.cross_entropy(logits, target, reduction="none")
    return (loss * visible.to(loss.dtype)).mean()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a plain state dict strictly; any missing, unexpected or mis-shaped tensor is an error."""
    try:
        state = load_torch(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"missing checkpoint: {path}") from e
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        raise ValueError(f"{path} is a training checkpoint, not a plain state dict (use its 'model' entry)")
    if getattr(model, "projection", None) is not None and not any(k.startswith("projection.") for k in state):
        # A released head (768-channel backbone) starting a backbone swap, as in the review:
        # every head tensor must load; the new projection keeps its seeded Xavier init.
        log.warning(
            "%s has no projection: head loaded strictly, projection %s left at its initialisation",
            path,
            tuple(model.projection.weight.shape),
        )
        state = {**state, **{f"projection.{k}": v for k, v in model.projection.state_dict().items()}}
    load_state(model, state, str(path))
    return model


def load_state(model: nn.Module, state: dict, source: str = "state dict") -> None:
    """Strict load with errors naming each faulty tensor and both shapes."""
    if not isinstance(state, dict):
        raise ValueError(f"{source} is not a state dict (got {type(state).__name__})")
    own = model.state_dict()
    problems = [f"missing tensor {k!r} (expected shape {tuple(v.shape)})" for k, v in own.items() if k not in state]
    problems += [
        f"unexpected tensor {k!r} (shape {tuple(getattr(v, 'shape', ()))})" for k in state if k not in own for v in [state[k]]
    ]
    problems += [
        f"tensor {k!r} has shape {tuple(state[k].shape)} in {source} but the model expects {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        hint = ""
        if any("pos_embed" in p for p in problems):
            hint = f" (the model was built for source grid {getattr(model, 'src_grid', '?')} and destination grid {getattr(model, 'dst_grid', '?')})"
        raise ValueError(f"cannot load {source} into {type(model).__name__}{hint}:\n  " + "\n  ".join(problems))
    model.load_state_dict(state, strict=True)


def candidate_embeddings(
    head: MatchingHead, src_feat: torch.Tensor, dst_feat: torch.Tensor, src_masks: torch.Tensor, cand_masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected descriptors of the sources (B, 1, D) and of the candidates (B, N, D) from raw
    backbone features and masks at input resolution (arguments as in ``score_candidates``)."""
    from omama.model.descriptors import describe

    src = head.project(src_feat)
    dst = head.project(dst_feat)
    B = src.shape[0]
    src_desc, dst_desc = describe(src, src_masks)[:, 0], describe(dst, cand_masks)
    if dst.shape[0] > 1:
        return head.embeddings(src_desc, src, dst_desc, dst)
    # A destination shared by every source (a frame's prediction, an adaptation group): the candidates attend to
    # each distinct source grid once (the sources of one camera share it) and are repeated for its sources.
    first, inverse = distinct_rows(src_feat)
    q, t = head.embeddings(src_desc, src[first], dst_desc.expand(len(first), -1, -1), dst.expand(B, -1, -1, -1))
    return q, t[inverse]


def distinct_rows(x: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The index of the first of each distinct row of ``x`` (along dim 0), and each row's position among them."""
    first, inverse = [], []
    for i in range(len(x)):
        same = next((k for k, j in enumerate(first) if torch.equal(x[i], x[j])), None)
        if same is None:
            same = len(first)
            first.append(i)
        inverse.append(same)
    return first, torch.tensor(inverse, device=x.device)


def score_candidates(
    head: MatchingHead, src_feat: torch.Tensor, dst_feat: torch.Tensor, src_masks: torch.Tensor, cand_masks: torch.Tensor
) -> torch.Tensor:
    """Cosine scores (B, N) from raw backbone features and masks at input resolution.

    src_feat (B, C, h', w'), dst_feat (B, C, h, w), src_masks (B, 1, H', W'), cand_masks (B, N, H, W).
    A destination of batch 1 (dst_feat and cand_masks) is shared by every source and described once.
    """
    q, t = candidate_embeddings(head, src_feat, dst_feat, src_masks, cand_masks)
    return (q * t).sum(-1)
