"""What explaining the top class adds to a Classify, on a GAP model, in the same run.

    python bench/explain_cost.py                       # ImageNet EfficientNet-Lite0, a real photo
    python bench/explain_cost.py --arch resnet18 --weights none --rounds 200

Exports the model with its feature-map output (as `onyx export` does), serves it in-process on
CPU, then sends the same JPEG (skimage's "chelsea") as plain Classify and as Classify with
`explain` (top-1), interleaved so both see the same machine state. Prints the median and p90 of
each and the ratio; the issue's target is explained / plain <= 1.10.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from onyx.client.classifier import Client
from onyx.proto.v1 import classifier_pb2 as api
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig


def export_model(arch: str, weights: str, repository: Path) -> None:
    from onyx.train.config import ImageTrainConfig
    from onyx.train.export.config import ExportConfig
    from onyx.train.export.pipeline import export_explainable
    from onyx.train.tasks.image.models import get_model
    from onyx.train.tasks.image.preprocessing import image_preprocessing
    from onyx.train.tasks.image.weights import imagenet_categories

    labels = imagenet_categories() if weights == "imagenet" else [f"c{i}" for i in range(10)]
    model = get_model(arch, len(labels), weights=weights)
    spec = image_preprocessing(ImageTrainConfig(data=Path(), model=arch, weights=weights))
    work = repository.parent / "work"
    work.mkdir()
    export = ExportConfig(checkpoint=Path("memory"), name="gap", repository=repository)
    export_explainable(model, arch, labels, spec, export, work, exporter="torchscript")


def photo_jpeg() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(  # type: ignore[no-untyped-call]
        buffer, format="JPEG", quality=90
    )
    return buffer.getvalue()


def measure(client: Client, image: bytes, rounds: int) -> tuple[list[float], list[float]]:
    inputs = [api.Input(image=image)]
    plain: list[float] = []
    explained: list[float] = []
    for index in range(rounds + 10):
        for explain, into in ((None, plain), (api.ExplainOptions(), explained)):
            started = time.perf_counter()
            client.classify("gap", inputs, top_k=1, explain=explain)
            if index >= 10:  # warm-up rounds are not counted
                into.append(time.perf_counter() - started)
    return plain, explained


def report(name: str, seconds: list[float]) -> str:
    p90 = float(np.percentile(seconds, 90))
    return f"{name:<18} median {statistics.median(seconds) * 1e3:7.2f} ms   p90 {p90 * 1e3:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet", help="imagenet or none")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "models"
        export_model(args.arch, args.weights, repository)
        config = ServerConfig(repository=repository, host="127.0.0.1", port=0, device="cpu")
        with ServerThread(config) as server, Client(server.address) as client:
            plain, explained = measure(client, photo_jpeg(), args.rounds)
    ratio = statistics.median(explained) / statistics.median(plain)
    print(f"{args.arch} ({args.weights}), one JPEG, {args.rounds} rounds each, interleaved")
    print(report("Classify", plain))
    print(report("Classify+explain", explained))
    print(f"explained / plain  {ratio:.3f}  (extra {100 * (ratio - 1):+.1f} %; target <= +10 %)")


if __name__ == "__main__":
    main()
