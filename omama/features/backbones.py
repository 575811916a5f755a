"""Frozen backbones that turn RGB frames into dense feature grids (B, C, h, w).

One ``Backbone`` class wraps every kind: DINOv2 / DINOv3 vision transformers (Hugging Face
transformers, or DINOv2 from torch hub), a ResNet-50 trained with DINO v1 (torchvision) and any
torchvision classification network cut at a chosen output stride (kind ``torchvision``, with
torchvision's own pretrained weights, see ``omama.weights``).
``weights: untrained`` builds the same architecture with seeded random weights (a small
``tiny`` configuration for the transformers), so the pipeline runs offline.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omama.io import load_torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIEWS = ("ego", "exo")
TINY_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "seed")
HF_MODEL_TYPES = {"dinov2": {"dinov2", "dinov2_with_registers"}, "dinov3": {"dinov3_vit"}}
RESNET_STRIDE = 32
RESIZE_MODES = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}


class TransformerTokens(nn.Module):
    """A transformers ViT -> patch tokens after the final LayerNorm as (B, C, h, w)."""

    def __init__(self, model: nn.Module, patch_size: int, prefix_tokens: int):
        super().__init__()
        self.model = model
        self.patch_size = patch_size
        self.prefix_tokens = prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.model(pixel_values=x).last_hidden_state[:, self.prefix_tokens :]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class HubTokens(nn.Module):
    """A torch-hub DINOv2 -> ``x_norm_patchtokens`` as (B, C, h, w)."""

    def __init__(self, model: nn.Module, patch_size: int):
        super().__init__()
        self.model = model
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.model.forward_features(x)["x_norm_patchtokens"]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class ResNetTrunk(nn.Module):
    """ResNet-50 without avgpool and fc: the last stage's output, stride 32."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.Sequential(resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def trunk_modules(model: nn.Module) -> list[nn.Module]:
    """A torchvision classifier's feature layers in order: ``model.features`` if it has one, else its
    children up to the global pooling; plain ``nn.Sequential`` containers are opened up."""
    if isinstance(getattr(model, "features", None), nn.Sequential):
        children = list(model.features)
    else:
        children = []
        for child in model.children():
            if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)):
                break
            children.append(child)

    def opened(m: nn.Module) -> list[nn.Module]:
        return [x for c in m for x in opened(c)] if type(m) is nn.Sequential else [m]

    return [x for c in children for x in opened(c)]


def cut_at_stride(model: nn.Module, stride: int, probe: int = 224) -> tuple[nn.Sequential, int]:
    """(trunk up to the last layer whose output stride is ``stride``, its channels).

    Strides are measured by running a probe image through the layers.
    """
    layers = trunk_modules(model)
    x = torch.zeros(1, 3, probe, probe)
    keep, channels, seen = None, None, []
    with torch.no_grad():
        for i, layer in enumerate(layers):
            x = layer(x)
            s = round(probe / x.shape[-1])
            seen.append(s)
            if s == stride:
                keep, channels = i + 1, x.shape[1]
    if keep is None:
        raise ValueError(f"no layer of {type(model).__name__} has output stride {stride}; available: {sorted(set(seen))}")
    return nn.Sequential(*layers[:keep]), int(channels)


class Backbone:
    """Frozen network + its input geometry: frames (uint8 RGB) -> float32 (B, C, h, w).

    ``patch_size`` is input pixels per grid cell (the ViT patch; 16 for ResNet-50, whose
    stride-32 map of half the grid is average-pooled up to the grid). ``resize`` is how frames
    of another size reach the input size: "nearest" (cv2.INTER_NEAREST, as the published
    O-MaMa code) or "bilinear" (cv2.INTER_LINEAR); frames already at the input size are
    passed through untouched either way.
    """

    def __init__(
        self,
        network: nn.Module,
        channels: int,
        patch_size: int,
        grids: dict,
        input_sizes: dict,
        info: dict,
        device: str | torch.device = "cpu",
        resize: str = "bilinear",
        compile: str = "none",
        channels_last: bool = False,
    ):
        if resize not in RESIZE_MODES:
            raise ValueError(f"backbone resize must be one of {sorted(RESIZE_MODES)}, got {resize!r}")
        self.resize_mode = resize
        self.device = torch.device(device)
        self.network = network.eval().requires_grad_(False).to(self.device)
        # The faster network paths, on CUDA only (the CPU computes as it always did).
        cuda = self.device.type == "cuda"
        self.compile, self.channels_last = (compile if cuda else "none"), (channels_last and cuda)
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        self._forward = self.network
        if self.compile != "none":
            self._forward = torch.compile(
                self.network, mode=None if self.compile == "default" else self.compile, dynamic=False
            )
        self.channels = int(channels)
        self.patch_size = int(patch_size)
        self._grids = {v: tuple(int(n) for n in g) for v, g in grids.items()}
        self._input_sizes = {v: tuple(int(n) for n in s) for v, s in input_sizes.items()}
        self._info = info
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255

    def grid(self, view: str) -> tuple[int, int]:
        return self._grids[_check_view(view)]

    def input_size(self, view: str) -> tuple[int, int]:
        """(H, W) the frames of ``view`` are resized to."""
        return self._input_sizes[_check_view(view)]

    def resize(self, image: np.ndarray, view: str) -> np.ndarray:
        """uint8 HxWx3 RGB -> uint8 RGB at the input size (``resize_mode``); untouched when already there."""
        H, W = self.input_size(view)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")
        if image.shape[:2] == (H, W):
            return image
        return cv2.resize(image, (W, H), interpolation=RESIZE_MODES[self.resize_mode])

    def normalize(self, batch: torch.Tensor, channels_first: bool = False) -> torch.Tensor:
        """uint8 (B, H, W, 3) (or (B, 3, H, W): ``channels_first``) at the input size -> ImageNet-normalised float
        (B, 3, H, W) on the device."""
        x = batch.to(self.device, non_blocking=True)
        x = (x if channels_first else x.permute(0, 3, 1, 2)).float()
        return (x - self._mean) / self._std

    def resize_tensor(self, image: torch.Tensor, view: str) -> torch.Tensor:
        """uint8 (3, h, w) -> uint8 (3, H, W) at the input size, where the tensor is: ``resize``'s interpolation (nearest
        takes the same source pixels as OpenCV's; bilinear is within a grey level of it); untouched when already there."""
        H, W = self.input_size(view)
        if tuple(image.shape[-2:]) == (H, W):
            return image
        if self.resize_mode == "nearest":  # OpenCV's source pixel: floor(x * (1 / (W / w))) in double precision
            rows, cols = (
                np.minimum(np.floor(np.arange(n) * (1.0 / (n / m))), m - 1)
                for n, m in ((H, image.shape[1]), (W, image.shape[2]))
            )
            index = lambda i: torch.from_numpy(i.astype(np.int64)).to(image.device)
            return image[:, index(rows)][:, :, index(cols)]
        up = F.interpolate(image[None].float(), size=(H, W), mode="bilinear", align_corners=False)[0]
        return up.round_().clamp_(0, 255).to(torch.uint8)

    def prepare_jpegs(self, jpegs: list[np.ndarray], view: str) -> torch.Tensor:
        """JPEG files' bytes (uint8) -> the network's input batch, decoded and resized on the backbone's device
        (torchvision.io.decode_jpeg, batched: nvJPEG on CUDA). EXIF orientation ignored, as ``load_frame`` does."""
        import warnings

        from torchvision.io import ImageReadMode, decode_jpeg

        datas = [torch.from_numpy(j) for j in jpegs]
        with warnings.catch_warnings():  # torchvision >= 0.29 deprecates it for TorchCodec (not a dependency here)
            warnings.filterwarnings("ignore", "The image decoding and encoding capabilities", DeprecationWarning)
            images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=self.device)
        return self.normalize(torch.stack([self.resize_tensor(im, view) for im in images]), channels_first=True)

    def prepare(self, images: list[np.ndarray], view: str) -> torch.Tensor:
        """Frames (uint8 HxWx3 RGB, any size) -> the network's input batch."""
        return self.normalize(torch.from_numpy(np.stack([self.resize(im, view) for im in images])))

    def encode(self, x: torch.Tensor, view: str) -> torch.Tensor:
        """Prepared batch -> float32 (B, C, h, w) on the device; no graph is kept."""
        if tuple(x.shape[-2:]) != self.input_size(view):
            raise ValueError(f"{view} input must be {self.input_size(view)}, got {tuple(x.shape[-2:])}")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast:
            y = self._forward(x)
            if tuple(y.shape[-2:]) != self.grid(view):
                y = F.adaptive_avg_pool2d(y, self.grid(view))
        return y.float()

    def features(self, images: list[np.ndarray], view: str) -> torch.Tensor:
        """Frames (uint8 HxWx3 RGB) -> float32 (B, C, h, w)."""
        return self.encode(self.prepare(images, view), view)

    def describe(self) -> dict:
        """Everything a feature store must record about how its features were made."""
        return {
            **self._info,
            "channels": self.channels,
            "patch_size": self.patch_size,
            "grid": {v: list(g) for v, g in self._grids.items()},
            "input_size": {v: list(s) for v, s in self._input_sizes.items()},
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "resize": self.resize_mode,
            "autocast": "bfloat16" if self.device.type == "cuda" else "none",
            "compile": self.compile,
            "channels_last": self.channels_last,
            "device": str(self.device),
            "parameters": sum(p.numel() for p in self.network.parameters()),
        }


def check_device(device: str | torch.device) -> torch.device:
    """The torch device, with a clear error when the config asks for CUDA on a machine without it."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(device)!r} requested (config 'device: cuda') but no CUDA device is available here; set device: cpu"
        )
    return device


def _check_view(view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    return view


def _grids(cfg: dict) -> dict:
    return {v: tuple(cfg[f"{v}_grid"]) for v in VIEWS}


def _tiny(cfg: dict) -> dict:
    return {k: cfg["tiny"][k] for k in TINY_KEYS}


@contextlib.contextmanager
def _seeded(seed: int):
    """Build modules under a fixed seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _tiny_transformers_config(kind: str, tiny: dict):
    from transformers import Dinov2WithRegistersConfig, DINOv3ViTConfig

    arch = {k: tiny[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    if kind == "dinov2":
        return Dinov2WithRegistersConfig(**arch, patch_size=14, image_size=518, num_register_tokens=4)
    return DINOv3ViTConfig(**arch, patch_size=16, num_register_tokens=4)


def load_transformers(cfg: dict) -> tuple[nn.Module, int, int, dict]:
    from transformers import AutoModel

    kind, weights = cfg["kind"], cfg["weights"]
    if weights == "untrained":
        tiny = _tiny(cfg)
        config = _tiny_transformers_config(kind, tiny)
        with _seeded(tiny["seed"]):
            model = AutoModel.from_config(config, attn_implementation="sdpa")
        source = {"tiny": tiny}
    else:
        try:
            model = AutoModel.from_pretrained(weights, attn_implementation="sdpa")
        except OSError as e:
            raise FileNotFoundError(
                f"cannot load {kind} weights {weights!r} (a Hugging Face id needs internet or the HF cache; "
                f"or give a local directory written by save_pretrained): {e}"
            ) from e
        source = {}
    config = model.config
    if config.model_type not in HF_MODEL_TYPES[kind]:
        raise ValueError(
            f"backbone kind {kind!r} expects a model of type {sorted(HF_MODEL_TYPES[kind])}, "
            f"but {weights!r} is {config.model_type!r}"
        )
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    info = {
        **source,
        "architecture": type(model).__name__,
        "prefix_tokens_dropped": prefix,
        "attn_implementation": config._attn_implementation,
    }
    return TransformerTokens(model, patch, prefix), config.hidden_size, patch, info


def load_torchhub(cfg: dict) -> tuple[nn.Module, int, int, dict]:
    repo, entry = cfg["hub_repo"], cfg["weights"]
    if entry == "untrained":
        raise ValueError("implementation torchhub needs weights = a hub entry such as 'dinov2_vitb14_reg'")
    source = "local" if Path(repo).is_dir() else "github"
    model = torch.hub.load(repo, entry, source=source)
    patch = model.patch_size if isinstance(model.patch_size, int) else model.patch_size[0]
    info = {"architecture": type(model).__name__, "hub_repo": repo, "hub_source": source}
    return HubTokens(model, patch), model.embed_dim, patch, info


def load_resnet(cfg: dict) -> tuple[nn.Module, int, int, dict]:
    import torchvision

    weights = cfg["weights"]
    if weights == "untrained":
        with _seeded(_tiny(cfg)["seed"]):
            resnet = torchvision.models.resnet50(weights=None)
    else:
        resnet = torchvision.models.resnet50(weights=None)
        if weights.startswith(("http://", "https://")):  # fetched by the torch_weights stage
            from omama.weights import cached_url

            state = load_torch(cached_url(weights), map_location="cpu", weights_only=True)
        elif Path(weights).is_file():
            state = load_torch(weights, map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(f"resnet50-dino weights {weights!r} is neither a URL nor a file")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        resnet.fc = nn.Identity()
        try:
            resnet.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{weights!r} is not a ResNet-50 state dict: {e}") from e
    info = {
        "architecture": "torchvision resnet50 (layer4 output, fc/avgpool removed)",
        "pooling": "adaptive_avg_pool2d from the stride-32 map to the grid",
    }
    return ResNetTrunk(resnet), 2048, RESNET_STRIDE // 2, info


def load_torchvision(cfg: dict) -> tuple[nn.Module, int, int, dict]:
    """Any torchvision classifier (``architecture``) as a dense extractor at ``stride``; weights
    ``untrained`` (seeded) or a torchvision weights name such as IMAGENET1K_V1 (checked file)."""
    import torchvision

    from omama.weights import load_state_dict

    arch, weights, stride = cfg["architecture"], cfg["weights"], int(cfg["stride"])
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"torchvision has no classification model {arch!r}")
    with _seeded(_tiny(cfg)["seed"]):
        model = torchvision.models.get_model(arch, weights=None)
    source = {"seed": _tiny(cfg)["seed"]}
    if weights != "untrained":
        state, source = load_state_dict(arch, weights)
        model.load_state_dict(state, strict=True)
    trunk, channels = cut_at_stride(model.eval(), stride)
    info = {
        "architecture": f"torchvision {arch} (feature layers up to output stride {stride})",
        "torchvision_model": arch,
        "stride": stride,
        "layers_kept": len(trunk),
        **source,
    }
    return trunk, channels, stride, info


def build(cfg: dict, device, network: nn.Module, channels: int, patch: int, info: dict) -> Backbone:
    """The ``Backbone`` of a loaded ``network`` (``channels`` per cell, ``patch`` input pixels per cell): its grids
    from the entry, its input size from its kind (``BackboneKind.input_size``), its description for the stores."""
    from omama.registry import BACKBONES

    kind = BACKBONES.get(cfg["kind"])
    grids = _grids(cfg)
    inputs = {v: kind.input_size(cfg, v) for v in VIEWS}
    info = {
        "kind": cfg["kind"],
        "implementation": cfg.get("implementation"),
        "weights": cfg["weights"],
        "untrained": cfg["weights"] == "untrained",
        **info,
    }
    return Backbone(
        network,
        channels,
        patch,
        grids,
        inputs,
        info,
        check_device(device or cfg["device"]),
        resize=cfg["resize"],
        compile=cfg["compile"],
        channels_last=cfg["channels_last"],
    )


def load_backbone(cfg: dict, device: str | torch.device | None = None) -> Backbone:
    """Build the frozen backbone a ``config["backbones"][name]`` entry describes, through its kind
    (``omama.features.kinds``, or a plug-in's). Input size = grid * patch for the ViTs (DINOv2 50x50 ->
    700x700); for ResNet-50 the input is sized so its stride-32 map is about half the grid (50x50 ->
    800x800 -> 25x25, pooled up to 50x50), as in the review; for kind ``torchvision`` grid * stride."""
    from omama.config import entry
    from omama.registry import BACKBONES

    cfg = entry("backbones", cfg)  # the schema's defaults (its kind's too)
    check_device(device or cfg["device"])
    return BACKBONES.get(cfg["kind"]).load(cfg, device)
