"""A registry of image classifiers: `list_models()`, `get_model(name, num_classes, in_channels)`.

model = get_model("small_cnn", num_classes=10, in_channels=1)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ModelBuilder = Callable[[int, int], nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def register(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return register


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    builder = _REGISTRY.get(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return builder(num_classes, in_channels)


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


@register_model("small_cnn")
def small_cnn(num_classes: int, in_channels: int) -> nn.Module:
    return SmallCNN(num_classes, in_channels)
