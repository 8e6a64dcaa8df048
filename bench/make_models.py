"""Build the benchmark repository: ResNet18 (fp32, 224x224, random weights) as `resnet18`.

    python bench/make_models.py --repository bench/models

Random weights: speed does not depend on them, and nothing is downloaded. Needs the train extra.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torchvision.models import resnet18

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.export import INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx
from onyx.train.publish import publish

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def resnet18_config(
    max_batch_size: int, max_queue_delay_us: int, size: int = 224
) -> pb.ModelConfig:
    return pb.ModelConfig(
        name="resnet18",
        task=pb.TASK_IMAGE,
        labels=[f"class_{i}" for i in range(1000)],
        input=pb.TensorSpec(name=INPUT_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 3, size, size]),
        output=pb.TensorSpec(name=OUTPUT_NAME, dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 1000]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        image=pb.ImagePreprocessing(
            resize_shorter=size * 8 // 7,
            crop_height=size,
            crop_width=size,
            interpolation=pb.INTERPOLATION_BILINEAR,
            color_mode=pb.COLOR_MODE_RGB,
            channel_order=pb.CHANNEL_ORDER_RGB,
            layout=pb.LAYOUT_NCHW,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        ),
        batching=pb.Batching(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us),
        description="ResNet18 with random weights, for benchmarks",
    )


def build_resnet18(
    repository: Path, max_batch_size: int, max_queue_delay_us: int, size: int = 224
) -> tuple[int, Path, str, float]:
    """Export ResNet18 (random weights, `size` x `size` inputs), check its parity with torch and
    publish it: (version, model.onnx, exporter, parity max |diff|)."""
    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "model.onnx"
        exporter = export_onnx(model, torch.randn(2, 3, size, size), path, opset=18)
        inputs = [torch.randn(b, 3, size, size) for b in (1, 3)]
        diff = check_parity(model, path, inputs, 1e-3, 1e-3)
        config = resnet18_config(max_batch_size, max_queue_delay_us, size)
        config.export.exporter, config.export.parity_max_abs_diff = exporter, diff
        version, model_path = publish(repository, config, Path(work))
    return version, model_path, exporter, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("bench/models"))
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    args = parser.parse_args()
    version, model_path, exporter, diff = build_resnet18(
        args.repository, args.max_batch_size, args.max_queue_delay_us
    )
    print(f"resnet18 v{version} at {model_path} ({exporter}, parity {diff:.2g})")


if __name__ == "__main__":
    main()
