"""A registry of image classifiers: `list_models()`, `get_model(name, num_classes, ...)`.

    model = get_model("resnet18", num_classes=5, weights="imagenet")   # head replaced
    model = get_model("small_cnn", num_classes=10, in_channels=1)

Every entry knows its architecture (built with its original head, so published weights load
strictly), the dotted name of its final linear layer (replaced for `num_classes`), its backbone
stages in input-to-output order (the transfer schedule unfreezes the last K), and where its
ImageNet weights and their preprocessing come from. A checkpoint is rebuilt from the name alone
(`weights="none"`, then its state dict), so export never needs the pretrained files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from onyx.train.tasks.image import weights as W

Stages = list[list[nn.Module]]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    # (in_channels) -> the architecture with its original head.
    build: Callable[[int], nn.Module]
    # Dotted attribute path of the final nn.Linear, replaced for the task's classes.
    head: str
    # Backbone stages, input to output; their parameters plus the head's are all of the model's.
    stages: Callable[[nn.Module], Stages]
    # "torchvision", "lite0" or None (no published weights).
    imagenet: Literal["torchvision", "lite0"] | None
    # Input size used when there are no weights to take it from.
    default_size: int = 224


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return entry


def get_model(
    name: str, num_classes: int, in_channels: int = 3, weights: str = "none"
) -> nn.Module:
    """Build `name` (weights: "imagenet", "none" or a state-dict path) with a `num_classes` head."""
    entry = model_entry(name)
    model = entry.build(in_channels)
    if weights == "imagenet":
        if entry.imagenet is None:
            raise ValueError(f"{name} has no ImageNet weights; use --weights none or PATH")
        model.load_state_dict(W.load_imagenet(name, entry.imagenet), strict=True)
    elif W.is_pretrained(weights):
        return _with_state_file(entry, model, Path(weights), num_classes, in_channels)
    adapt_in_channels(model, in_channels)
    replace_head(model, entry.head, num_classes)
    return model


def _with_state_file(
    entry: ModelEntry, model: nn.Module, path: Path, num_classes: int, in_channels: int
) -> nn.Module:
    """Load a local state dict strictly: either the published layout (original head) or one
    already fine-tuned for this task (head and channels as asked)."""
    state = W.load_state_file(path)
    try:
        model.load_state_dict(state, strict=True)
        adapt_in_channels(model, in_channels)
        replace_head(model, entry.head, num_classes)
    except RuntimeError:
        model = entry.build(in_channels)
        adapt_in_channels(model, in_channels)
        replace_head(model, entry.head, num_classes)
        model.load_state_dict(state, strict=True)
    return model


def weights_preprocessing(name: str, weights: str) -> W.WeightsPreprocessing | None:
    """The preprocessing that belongs to ImageNet weights (None for other weights)."""
    entry = model_entry(name)
    if weights != "imagenet" or entry.imagenet is None:
        return None
    if entry.imagenet == "lite0":
        return W.timm_preprocessing("tf_efficientnet_lite0")
    return W.torchvision_preprocessing(name)


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def adapt_in_channels(model: nn.Module, in_channels: int) -> None:
    """Grayscale input on an RGB network: sum the first conv's kernels over colour, which gives a
    gray image the response its RGB copy would get (so pretrained features survive)."""
    conv = first_conv(model)
    if conv.in_channels == in_channels:
        return
    if in_channels != 1:
        raise ValueError(f"can only adapt a {conv.in_channels}-channel network to 1 channel")
    conv.weight = nn.Parameter(conv.weight.detach().sum(dim=1, keepdim=True))
    conv.in_channels = 1


def replace_head(model: nn.Module, head: str, num_classes: int) -> None:
    parent_name, _, attr = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent.get_submodule(attr)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{head} is {type(old).__name__}, expected nn.Linear")
    if old.out_features == num_classes:
        return
    new = nn.Linear(old.in_features, num_classes)
    # nn.Sequential names its children "0", "1", ...: setattr replaces them in place too.
    setattr(parent, attr, new)


def head_module(name: str, model: nn.Module) -> nn.Module:
    return model.get_submodule(model_entry(name).head)


def backbone_stages(name: str, model: nn.Module) -> Stages:
    return model_entry(name).stages(model)


# --- architectures -------------------------------------------------------------------------


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Conv -> pool blocks, then global average pooling and a dense head; any input size."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(in_channels, width),
            nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            _conv_block(width, width * 2),
            nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            _conv_block(width * 2, width * 4),
            nn.AdaptiveAvgPool2d(1),  # (B, 4w, 1, 1)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(width * 4, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def _torchvision(arch: str) -> Callable[[int], nn.Module]:
    def build(in_channels: int) -> nn.Module:  # noqa: ARG001 (adapted after weights load)
        import torchvision.models as tvm

        model: nn.Module = tvm.get_model(arch, weights=None)
        return model

    return build


def _build_lite0(in_channels: int) -> nn.Module:  # noqa: ARG001
    import timm

    # tf_ variant: TF "SAME" padding and BN eps 1e-3, which the converted weights were trained with.
    model: nn.Module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    return model


def _each(container: str) -> Callable[[nn.Module], Stages]:
    return lambda m: [[child] for child in m.get_submodule(container).children()]


def _resnet_stages(m: nn.Module) -> Stages:
    stem = [m.get_submodule("conv1"), m.get_submodule("bn1")]
    return [stem] + [[m.get_submodule(f"layer{i}")] for i in range(1, 5)]


def _mobilenet_stages(m: nn.Module) -> Stages:
    # The classifier's first (pretrained) linear layer is the last backbone stage.
    return [*_each("features")(m), [m.get_submodule("classifier.0")]]


def _lite0_stages(m: nn.Module) -> Stages:
    stem = [m.get_submodule("conv_stem"), m.get_submodule("bn1")]
    top = [m.get_submodule("conv_head"), m.get_submodule("bn2")]
    return [stem, *_each("blocks")(m), top]


for _arch in ("resnet18", "resnet34", "resnet50"):
    register(ModelEntry(_arch, _torchvision(_arch), "fc", _resnet_stages, "torchvision"))
for _arch in ("mobilenet_v3_small", "mobilenet_v3_large"):
    register(
        ModelEntry(_arch, _torchvision(_arch), "classifier.3", _mobilenet_stages, "torchvision")
    )
register(
    ModelEntry(
        "efficientnet_b0",
        _torchvision("efficientnet_b0"),
        "classifier.1",
        _each("features"),
        "torchvision",
    )
)
register(ModelEntry("efficientnet_lite0", _build_lite0, "classifier", _lite0_stages, "lite0"))
register(
    ModelEntry(
        "small_cnn",
        lambda c: SmallCNN(1000, c),
        "classifier.2",
        _each("features"),
        None,
        default_size=32,
    )
)
