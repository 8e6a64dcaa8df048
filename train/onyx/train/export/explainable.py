"""Export-side Grad-CAM support: split a registry CNN at its last convolutional feature map.

Every registry architecture ends in global average pooling and a head, so the class scores depend
on the last feature map A (N, K, h, w) only through its spatial mean. Export gives the graph a
second output, A, and writes the head's weights beside model.onnx; the server then computes
Grad-CAM in numpy (`onyx.contract.gradcam`) without autograd:

    split = feature_split("resnet18", model)           # None for an unknown architecture
    wrapped = FeatureMapModel(split)                    # forward -> (logits, feature map)
    save_head(head_arrays(split), folder / HEAD_FILE)   # what the server reads
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onyx.contract.gradcam import FEATURE_MAP_NAME, HEAD_FILE, Head, save_head
from onyx.proto.v1 import model_config_pb2 as pb

__all__ = [
    "FEATURE_MAP_NAME",
    "HEAD_FILE",
    "FeatureMapModel",
    "FeatureSplit",
    "explain_support",
    "feature_split",
    "head_arrays",
    "save_head",
]

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FeatureSplit:
    """`features(x)` -> A (N, K, h, w); `head(A)` -> logits; `linears` the head's layers after
    pooling, in order, with `activation` between them (MobileNetV3: Linear, Hardswish, Linear)."""

    features: Forward
    head: Forward
    linears: tuple[nn.Linear, ...]
    activation: str = ""


def _pooled(module: nn.Module) -> Forward:
    # Flatten + dropout (identity in eval) + module: what every registry head does after pooling.
    return lambda a: module(torch.flatten(a.mean(dim=(2, 3)), 1))


def _resnet(m: nn.Module) -> FeatureSplit:
    stem = nn.Sequential(*(m.get_submodule(n) for n in ("conv1", "bn1", "relu", "maxpool")))
    body = nn.Sequential(stem, *(m.get_submodule(f"layer{i}") for i in range(1, 5)))
    fc = m.get_submodule("fc")
    assert isinstance(fc, nn.Linear)
    return FeatureSplit(body, _pooled(fc), (fc,))


def _torchvision_features(m: nn.Module) -> FeatureSplit:
    classifier = m.get_submodule("classifier")
    linears = tuple(x for x in classifier.modules() if isinstance(x, nn.Linear))
    hardswish = any(isinstance(x, nn.Hardswish) for x in classifier.modules())
    return FeatureSplit(
        m.get_submodule("features"), _pooled(classifier), linears, "hardswish" if hardswish else ""
    )


def _lite0(m: nn.Module) -> FeatureSplit:
    classifier = m.get_submodule("classifier")
    assert isinstance(classifier, nn.Linear)
    forward_features: Forward = m.forward_features  # type: ignore[assignment]
    return FeatureSplit(forward_features, _pooled(classifier), (classifier,))


def _small_cnn(m: nn.Module) -> FeatureSplit:
    features = m.get_submodule("features")
    body = nn.Sequential(*list(features.children())[:-1])  # all but the pooling
    classifier = m.get_submodule("classifier")
    linear = classifier.get_submodule("2")
    assert isinstance(linear, nn.Linear)
    return FeatureSplit(body, _pooled(classifier), (linear,))


_SPLITS: dict[str, Callable[[nn.Module], FeatureSplit]] = {
    "resnet18": _resnet,
    "resnet34": _resnet,
    "resnet50": _resnet,
    "mobilenet_v3_small": _torchvision_features,
    "mobilenet_v3_large": _torchvision_features,
    "efficientnet_b0": _torchvision_features,
    "efficientnet_lite0": _lite0,
    "small_cnn": _small_cnn,
}


def feature_split(name: str, model: nn.Module) -> FeatureSplit | None:
    """The split of registry architecture `name`; None when it is not known to end in GAP."""
    make = _SPLITS.get(name)
    return make(model) if make is not None else None


class FeatureMapModel(nn.Module):
    """The model with its last feature map as a second output: (logits, A)."""

    def __init__(self, model: nn.Module, split: FeatureSplit) -> None:
        super().__init__()
        self.model = model  # registered, so .eval() and parameters reach it
        self._split = split

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self._split.features(x)  # (N, K, h, w)
        return self._split.head(a), a


def head_arrays(split: FeatureSplit) -> Head:
    """The head's weights as numpy, the form the server computes gradients from."""
    layers = [
        (lin.weight.detach().double().numpy(), _bias(lin)) for lin in split.linears
    ]  # (out, in), (out,)
    if len(layers) == 1:
        return Head(layers[0][0], layers[0][1])
    if len(layers) == 2 and split.activation == "hardswish":
        (w1, b1), (w2, b2) = layers
        return Head(w2, b2, w1, b1, "hardswish")
    raise ValueError(f"no closed-form gradient for a head of {len(layers)} linear layers")


def _bias(linear: nn.Linear) -> np.ndarray:
    if linear.bias is None:
        return np.zeros(linear.out_features)
    return linear.bias.detach().double().numpy()


def explain_support(channels: int) -> pb.ExplainSupport:
    """The config entry that tells the server the version can explain itself."""
    return pb.ExplainSupport(
        feature_map=pb.TensorSpec(
            name=FEATURE_MAP_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, channels, -1, -1]
        ),
        head_file=HEAD_FILE,
    )


def feature_channels(split: FeatureSplit, example: torch.Tensor) -> int:
    with torch.no_grad():
        return int(split.features(example[:1]).shape[1])


def save_head_for(split: FeatureSplit, folder: Path) -> None:
    save_head(head_arrays(split), folder / HEAD_FILE)


BuildConfig = Callable[..., pb.ModelConfig]


def explainable(
    name: str, model: nn.Module, example: torch.Tensor, build_config: BuildConfig
) -> tuple[nn.Module, BuildConfig, Callable[[Path], None], tuple[str, str]] | None:
    """What export needs to make an image model explain itself: the two-output model, a config
    builder that records the feature map, the side file writer and the output names. None for
    an architecture without a known split (it exports as before, without explanations)."""
    split = feature_split(name, model)
    if split is None:
        return None
    support = explain_support(feature_channels(split, example))

    def build(*args: object) -> pb.ModelConfig:
        config = build_config(*args)
        config.explain.CopyFrom(support)
        return config

    def side_files(folder: Path) -> None:
        save_head_for(split, folder)

    return FeatureMapModel(model, split).eval(), build, side_files, ("logits", FEATURE_MAP_NAME)
