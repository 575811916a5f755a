"""The two directions of the correspondence benchmark, and the ego->exo submission geometry.

``exo2ego``: the source is an exo camera's mask, the destination the ego frame (O-MaMa's
published direction; official submission key ``exo-ego``, mask keys ``{exo_cam}_{ego_cam}``).
``ego2exo``: the source is the ego mask, the destination each exo camera's frame (official key
``ego-exo``, mask keys ``{ego_cam}_{exo_cam}``). A pair row always names both cameras
(``ego_cam``, ``exo_cam``); the direction says which one is the source.

Predictions of both directions are masks of the destination frame at its evaluation size (longer
side 480, aspect kept), unpadded: the official ``evaluate_egoexo.py`` compares an ego->exo
prediction with the exo ground truth at that size as it stands. (An earlier version of the
challenge's evaluators took 480x480 squares padded above and below and cut the padding off; its
exo->ego counterpart cut a square ego frame to nothing, and the later version, which the baseline's
prediction script matches by unpadding its own masks, dropped the step. README, "The ego->exo
direction".)
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("exo2ego", "ego2exo")


@dataclass(frozen=True)
class Direction:
    name: str

    def __post_init__(self):
        if self.name not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.name!r}; use one of {DIRECTIONS}")

    @property
    def src_view(self) -> str:
        return "exo" if self.name == "exo2ego" else "ego"

    @property
    def dst_view(self) -> str:
        return "ego" if self.name == "exo2ego" else "exo"

    @property
    def src_col(self) -> str:
        """Pair-table column naming the source camera."""
        return f"{self.src_view}_cam"

    @property
    def dst_col(self) -> str:
        return f"{self.dst_view}_cam"

    @property
    def present(self) -> str:
        """Column saying whether the destination view has the object."""
        return f"{self.dst_view}_present"

    @property
    def submission_key(self) -> str:
        return "exo-ego" if self.name == "exo2ego" else "ego-exo"

    def mask_key(self, ego_cam: str, exo_cam: str) -> str:
        """The submission's camera-pair key: source camera first."""
        return f"{exo_cam}_{ego_cam}" if self.name == "exo2ego" else f"{ego_cam}_{exo_cam}"
