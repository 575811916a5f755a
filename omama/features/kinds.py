"""The built-in backbone kinds: dinov2, dinov3, resnet50-dino and torchvision.

A backbone kind registers (``@BACKBONES.register``) a class with:

- ``name`` and ``schema``: its own settings (a JSON-schema fragment with their defaults), validated with the
  settings every backbone has (``backbones.<name>`` in the config schema);
- ``problems(name, cfg)``: what stops a run before its first job (a missing file, an impossible size);
- ``fetches(cfg)`` / ``fetch(cfg, timeout=)``: whether the ``torch_weights`` stage must fetch its weights
  into the cache first (on the submitting host, which has internet), and how;
- ``input_size(cfg, view)`` and ``frame_bytes(cfg, view)``: its input for a view's grid and the memory one
  frame takes in its forward pass (preflight's estimates, without loading anything);
- ``load(cfg, device)``: the network as an ``omama.features.backbones.Backbone``.

This module stays light (the Snakefile imports it through the registry): networks are imported in ``load``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from omama.registry import BACKBONES

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GATED_HF = ("facebook/dinov3-",)
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
CNN_PIXEL_BYTES = 256  # per input pixel of a frame: torchvision networks (and ResNet-50) cut at stride 16
VIT_BYTES = 96  # per token and hidden channel: transformers (DINOv2/v3)
RESNET_STRIDE = 32


class BackboneKind:
    """What every backbone kind provides (defaults for the optional parts)."""

    name: str = ""
    schema: dict = {"properties": {}}
    patch: int = 16  # input pixels per grid cell

    def problems(self, name: str, cfg: dict) -> list[str]:
        return []

    def fetches(self, cfg: dict) -> bool:
        return False

    def fetch(self, cfg: dict, *, timeout: float) -> dict:
        raise NotImplementedError(f"backbone kind {self.name!r} fetches nothing")

    def input_size(self, cfg: dict, view: str) -> tuple[int, int]:
        return tuple(n * self.patch for n in cfg[f"{view}_grid"])

    def frame_bytes(self, cfg: dict, view: str) -> float:
        h, w = self.input_size(cfg, view)
        return h * w * CNN_PIXEL_BYTES

    def load(self, cfg: dict, device):
        raise NotImplementedError


def local_path(weights: str) -> bool:
    """Whether a weights string names a file or folder (rather than a hub id, a URL or 'untrained')."""
    return (
        weights.startswith(("/", ".", "~"))
        or weights.endswith(FILE_SUFFIXES)
        or (not HF_ID.match(weights) and not weights.startswith(("http://", "https://")))
    )


def hf_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def hf_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


class Transformer(BackboneKind):
    """DINOv2 / DINOv3 vision transformers through Hugging Face transformers (DINOv2 also torch hub)."""

    def problems(self, name: str, cfg: dict) -> list[str]:
        tiny, weights = cfg["tiny"], cfg["weights"]
        if weights == "untrained":
            if tiny["hidden_size"] % tiny["num_attention_heads"]:
                return [
                    f"backbones.{name}.tiny.hidden_size {tiny['hidden_size']} is not a multiple of num_attention_heads "
                    f"{tiny['num_attention_heads']}: each attention head gets an equal share of the channels"
                ]
            return []
        if Path(weights).expanduser().exists() or cfg["implementation"] == "torchhub":
            return []
        if local_path(weights):
            return [f"backbones.{name}.weights {weights!r} does not exist: put the {self.name} weights there"]
        if HF_ID.match(weights) and not hf_cached(weights):
            if weights.startswith(GATED_HF) and not hf_token():
                return [
                    f"backbones.{name}.weights {weights!r} is a gated Hugging Face model that is not in the local "
                    f"cache and no Hugging Face token is set: accept its licence on "
                    f"https://huggingface.co/{weights}, then run `hf auth login` or set HF_TOKEN"
                ]
            if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"):
                return [
                    f"backbones.{name}.weights {weights!r} is not in the Hugging Face cache and the hub is set "
                    f"offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE): download it once online or give a local folder"
                ]
        return []

    def hidden_size(self, cfg: dict) -> int:
        """Channels of the tokens: the tiny size, the local or cached config's, else ViT-B's 768."""
        import json

        if cfg["weights"] == "untrained":
            return cfg["tiny"]["hidden_size"]
        folder = Path(cfg["weights"]).expanduser()
        found = folder / "config.json" if (folder / "config.json").is_file() else None
        if found is None and HF_ID.match(cfg["weights"]):
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(cfg["weights"], "config.json")
            found = Path(cached) if isinstance(cached, str) else None
        return int(json.loads(found.read_text()).get("hidden_size", 768)) if found else 768

    def frame_bytes(self, cfg: dict, view: str) -> float:
        h, w = self.input_size(cfg, view)
        return h * w / self.patch**2 * self.hidden_size(cfg) * VIT_BYTES

    def load(self, cfg: dict, device):
        from omama.features import backbones

        loader = backbones.load_torchhub if cfg["implementation"] == "torchhub" else backbones.load_transformers
        return backbones.build(cfg, device, *loader(cfg))


@BACKBONES.register
class DinoV2(Transformer):
    name = "dinov2"
    patch = 14
    schema = yaml.safe_load(
        """
        properties:
          implementation:
            type: string
            enum: [transformers, torchhub]
            default: transformers
            description: "how the network is loaded: Hugging Face transformers (weights: an id or a local folder) or torch hub"
          hub_repo: {type: string, default: facebookresearch/dinov2, description: "torchhub: GitHub repo or local clone; weights = hub entry"}
        """
    )


@BACKBONES.register
class DinoV3(Transformer):
    name = "dinov3"
    patch = 16
    schema = yaml.safe_load(
        """
        properties:
          implementation: {type: string, enum: [transformers], default: transformers, description: "Hugging Face transformers"}
        """
    )


@BACKBONES.register
class ResNet50Dino(BackboneKind):
    """ResNet-50 trained with DINO v1 (torchvision's architecture), its stride-32 map pooled up to the grid."""

    name = "resnet50-dino"
    schema = yaml.safe_load(
        """
        properties:
          implementation: {type: string, enum: [torchvision], default: torchvision, description: "torchvision's ResNet-50"}
        """
    )

    def problems(self, name: str, cfg: dict) -> list[str]:
        weights = cfg["weights"]
        if weights == "untrained" or weights.startswith(("http://", "https://")) or Path(weights).expanduser().is_file():
            return []
        return [f"backbones.{name}.weights {weights!r} does not exist: put the ResNet-50 DINO weights there or give its URL"]

    def fetches(self, cfg: dict) -> bool:
        return cfg["weights"].startswith(("http://", "https://"))

    def fetch(self, cfg: dict, *, timeout: float) -> dict:
        from omama.weights import ensure_url

        return ensure_url(cfg["weights"], timeout=timeout)

    def input_size(self, cfg: dict, view: str) -> tuple[int, int]:
        return tuple(-(-n // 2) * RESNET_STRIDE for n in cfg[f"{view}_grid"])

    def load(self, cfg: dict, device):
        from omama.features import backbones

        return backbones.build(cfg, device, *backbones.load_resnet(cfg))


@BACKBONES.register
class Torchvision(BackboneKind):
    """Any torchvision classification network cut at an output stride, with torchvision's own weights."""

    name = "torchvision"
    schema = yaml.safe_load(
        """
        properties:
          implementation: {type: string, enum: [torchvision], default: torchvision, description: "torchvision's model builders"}
          architecture: {type: string, default: mobilenet_v2, description: "any torchvision classification model name (mobilenet_v2, resnet50, ...); weights = one of its weights names (IMAGENET1K_V1, DEFAULT) or untrained"}
          stride: {type: integer, minimum: 1, default: 16, description: "output stride the feature layers are cut at; input = grid * stride"}
        """
    )

    def fetches(self, cfg: dict) -> bool:
        # A weights name is checked by the torch_weights job (importing torchvision here would slow every start-up).
        return cfg["weights"] != "untrained"

    def fetch(self, cfg: dict, *, timeout: float) -> dict:
        from omama.weights import ensure_weights

        return ensure_weights(cfg["architecture"], cfg["weights"], timeout=timeout)

    def input_size(self, cfg: dict, view: str) -> tuple[int, int]:
        return tuple(n * cfg["stride"] for n in cfg[f"{view}_grid"])

    def load(self, cfg: dict, device):
        from omama.features import backbones

        return backbones.build(cfg, device, *backbones.load_torchvision(cfg))
