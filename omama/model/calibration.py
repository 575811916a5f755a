"""The calibration of an existence head's confidence: confidence = sigmoid(scale * d + bias), d the logit
difference (present - absent) of ``mlp_visible``, with ``scale`` and ``bias`` minimising the class-balanced
negative log-likelihood on validation (each class weighs half; a small L2 penalty on ``scale`` keeps
separable data finite). The evaluator's fixed rule "confidence > 0.5 = present" is then the boundary
d = -bias / scale at which validation's two classes are equally likely: the balanced-accuracy boundary."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from omama.io import read_json
from omama.model.head import PRESENT

log = logging.getLogger(__name__)

L2_SCALE = 1e-3  # penalty on the calibration's scale (keeps a separable validation set finite)


@dataclass(frozen=True)
class Calibration:
    """confidence = sigmoid(scale * (logit_present - logit_absent) + bias)."""

    scale: float = 1.0
    bias: float = 0.0

    @property
    def boundary(self) -> float:
        """The logit difference at which the confidence is 0.5."""
        return -self.bias / self.scale

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated presence probabilities of ``mlp_visible`` logits (..., 2)."""
        d = logits[..., PRESENT] - logits[..., 1 - PRESENT]
        return torch.sigmoid(self.scale * d + self.bias)

    @classmethod
    def load(cls, path) -> Calibration:
        d = read_json(path, "existence calibration")
        try:
            return cls(scale=float(d["scale"]), bias=float(d["bias"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path} lacks the calibration's scale and bias: {e}") from None


def balanced_nll(params: np.ndarray, d: np.ndarray, present: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """Class-weighted logistic loss of (scale, bias) and its gradient."""
    scale, bias = params
    z = scale * d + bias
    sign = np.where(present, 1.0, -1.0)
    loss = float((weights * np.logaddexp(0.0, -sign * z)).sum() + 0.5 * L2_SCALE * scale**2)
    g = weights * -sign / (1.0 + np.exp(np.clip(sign * z, -500, 500)))  # d loss / d z
    return loss, np.array([(g * d).sum() + L2_SCALE * scale, g.sum()])


def fit_calibration(logit_diff, present) -> tuple[Calibration, dict]:
    """(Calibration, info) fitted on validation logit differences and true presence.

    Needs both classes; otherwise the identity calibration is returned with ``info["fitted"]`` False
    and the reason (the head's own 0.5 boundary is then used as it is)."""
    d = np.asarray(logit_diff, float)
    y = np.asarray(present, bool)
    n_present, n_absent = int(y.sum()), int((~y).sum())
    info = {"n": len(y), "n_present": n_present, "n_absent": n_absent}
    if n_present == 0 or n_absent == 0:
        reason = f"validation holds {n_present} present and {n_absent} absent samples: both classes are needed"
        log.warning("existence calibration not fitted: %s; using the identity", reason)
        return Calibration(), {**info, "fitted": False, "reason": reason}
    weights = np.where(y, 0.5 / n_present, 0.5 / n_absent)
    res = minimize(
        balanced_nll,
        np.array([1.0, 0.0]),
        args=(d, y, weights),
        jac=True,
        method="L-BFGS-B",
        bounds=[(1e-6, None), (None, None)],
    )
    if not res.success:
        log.warning("existence calibration: optimiser stopped early (%s)", res.message)
    cal = Calibration(scale=float(res.x[0]), bias=float(res.x[1]))
    return cal, {**info, "fitted": True, "balanced_nll": float(res.fun)}
