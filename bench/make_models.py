"""Build benchmark models: ResNet18 (fp32, 224x224) as `resnet18`, a digits-class tiny CNN
(1x28x28 grayscale, 10 classes) as `digits`; random weights.

    python bench/make_models.py --repository bench/models                # resnet18
    python bench/make_models.py --repository bench/models --model digits

Random weights: speed does not depend on them, and nothing is downloaded. Each model is exported
and parity-checked by onyx.train and published as a user would, so Onyx serves it as a normal
image model (raw FP32 tensors over KServe v2, or encoded images). Needs the train extra.
`bench/small_models.py --table` calls these functions to make its models on the fly.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.export import INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx
from onyx.train.export.publish import publish

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DIGITS_SIZE = 28


def image_config(
    name: str, shape: tuple[int, int, int], classes: int, batching: pb.Batching, description: str
) -> pb.ModelConfig:
    channels, height, width = shape
    rgb = channels == 3
    return pb.ModelConfig(
        name=name,
        task=pb.TASK_IMAGE,
        labels=[f"class_{i}" for i in range(classes)],
        input=pb.TensorSpec(name=INPUT_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, *shape]),
        output=pb.TensorSpec(name=OUTPUT_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, classes]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        image=pb.ImagePreprocessing(
            # ImageNet's resize-then-crop for the big model; digits are taken at their size.
            resize_shorter=height * 8 // 7 if rgb else height,  # 224 -> 256
            crop_height=height,
            crop_width=width,
            interpolation=pb.INTERPOLATION_BILINEAR,
            color_mode=pb.COLOR_MODE_RGB if rgb else pb.COLOR_MODE_GRAYSCALE,
            channel_order=pb.CHANNEL_ORDER_RGB,
            layout=pb.LAYOUT_NCHW,
            mean=IMAGENET_MEAN if rgb else [0.5],
            std=IMAGENET_STD if rgb else [0.5],
        ),
        batching=batching,
        description=description,
    )


def resnet18_config(
    max_batch_size: int, max_queue_delay_us: int, size: int = 224
) -> pb.ModelConfig:
    batching = pb.Batching(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us)
    return image_config(
        "resnet18", (3, size, size), 1000, batching, "ResNet18 with random weights, for benchmarks"
    )


def digits_config(max_batch_size: int, max_queue_delay_us: int) -> pb.ModelConfig:
    batching = pb.Batching(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us)
    shape = (1, DIGITS_SIZE, DIGITS_SIZE)
    return image_config(
        "digits", shape, 10, batching, "digits-class tiny CNN with random weights, for benchmarks"
    )


class DigitsNet(nn.Module):
    """Two 3x3 convolutions (8, 16 channels) with pooling, then one linear layer: a few tens of
    microseconds per image, so serving it measures the RPC path, not the model."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 8, 14, 14)
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 7, 7)
        )  # fmt: skip
        self.head = nn.Linear(16 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # type: ignore[no-any-return]


def publish_image_model(
    repository: Path, model: nn.Module, config: pb.ModelConfig
) -> tuple[int, Path]:
    """Export `model` (random input of the config's shape), check it against torch, publish it
    into `repository`; returns the published version and its model file."""
    shape = tuple(config.input.dims[1:])
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "model.onnx"
        exporter = export_onnx(model, torch.randn(2, *shape), path, opset=18)
        diff = check_parity(model, path, [torch.randn(b, *shape) for b in (1, 3)], 1e-3, 1e-3)
        config.export.exporter, config.export.parity_max_abs_diff = exporter, diff
        return publish(repository, config, Path(work))


def build_resnet18(
    repository: Path, max_batch_size: int = 8, max_queue_delay_us: int = 0, size: int = 224
) -> tuple[int, Path]:
    """ResNet18 (random weights, `size` x `size` inputs) published: (version, model file)."""
    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    config = resnet18_config(max_batch_size, max_queue_delay_us, size)
    return publish_image_model(repository, model, config)


def make_resnet18(repository: Path, max_batch_size: int = 8, max_queue_delay_us: int = 0) -> Path:
    return build_resnet18(repository, max_batch_size, max_queue_delay_us)[1]


def make_digits(repository: Path, max_batch_size: int = 16, max_queue_delay_us: int = 0) -> Path:
    torch.manual_seed(0)
    model = DigitsNet().eval()
    config = digits_config(max_batch_size, max_queue_delay_us)
    return publish_image_model(repository, model, config)[1]


MAKERS: dict[str, Callable[[Path, int, int], Path]] = {
    "resnet18": make_resnet18,
    "digits": make_digits,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("bench/models"))
    parser.add_argument("--model", choices=sorted(MAKERS), default="resnet18")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    args = parser.parse_args()
    path = MAKERS[args.model](args.repository, args.max_batch_size, args.max_queue_delay_us)
    print(f"{args.model} at {path}")


if __name__ == "__main__":
    main()
