"""The embedded default: the whole Onyx path on real bundled data, no downloads.

    onyx demo

Builds an image-folder dataset from scikit-learn's handwritten digits (real scans, shipped with
the package), trains a small CNN, exports it to ONNX with a parity check, publishes it into the
repository, starts the gRPC server on it, and classifies held-out digits over a real channel.
It also trains a small sentiment LSTM on generated reviews (`onyx.train.text.demo`), publishes it
as `sentiment` and classifies a few sentences with the same server.
"""

from __future__ import annotations

import logging
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from onyx.serve.background import ServerThread
from onyx.serve.client import Client, format_table
from onyx.serve.config import ServerConfig
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.engine import fit
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.text.demo import classify_sentences, format_sentences, publish_sentiment

log = logging.getLogger(__name__)

DIGITS_SIZE = 32
# No flips or rotations (a mirrored or turned digit can change its label), no colour jitter;
# small shifts only.
DIGITS_AUGMENT = AugmentConfig(
    crop_scale_min=0.0, hflip=False, rotation_degrees=0.0, translate_fraction=0.05, color_jitter=0.0
)


@dataclass(frozen=True)
class DemoResult:
    version: int
    val_accuracy: float
    heldout_accuracy: float
    heldout: int
    sentiment_version: int = 0
    sentiment_val_accuracy: float = 0.0
    # (sentence, label, score) as the server classified them.
    sentences: list[tuple[str, str, float]] = field(default_factory=list)


def write_digits(out: Path, heldout_fraction: float = 0.1, seed: int = 0) -> tuple[Path, Path]:
    """Write digits as 32x32 grayscale PNGs: out/train/<digit>/ and out/heldout/<digit>/."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = list(range(len(digits.target)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * heldout_fraction)
    for rank, index in enumerate(order):
        part = "heldout" if rank < cut else "train"
        folder = out / part / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[index] * (255.0 / 16.0)).astype(np.uint8)  # 8x8, values 0..16
        image = Image.fromarray(pixels, mode="L").resize(
            (DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.BICUBIC
        )
        image.save(folder / f"{index:04d}.png")
    return out / "train", out / "heldout"


def run_demo(
    repository: Path, work_dir: Path | None = None, epochs: int = 8, shown: int = 6
) -> DemoResult:
    with tempfile.TemporaryDirectory(prefix="onyx-demo-") as tmp:
        work = work_dir or Path(tmp)
        log.info("1/4 building the digits dataset in %s", work / "digits")
        train_dir, heldout_dir = write_digits(work / "digits")
        log.info("2/4 training a small CNN")
        config = ImageTrainConfig(
            data=train_dir,
            out_dir=work / "run",
            model="small_cnn",
            image_size=DIGITS_SIZE,
            color_mode="grayscale",
            epochs=epochs,
            batch_size=64,
            lr=3e-3,
            mean=(0.5,),
            std=(0.5,),
            augment=DIGITS_AUGMENT,
        )
        fitted = fit(config)
        log.info("3/4 exporting to ONNX and publishing into %s", repository)
        export_dir = work / "export"
        export_dir.mkdir(exist_ok=True)
        exported = export_checkpoint(
            ExportConfig(checkpoint=fitted.best_checkpoint, name="digits", repository=repository),
            export_dir,
        )
        log.info("4/4 training a sentiment LSTM on generated reviews and publishing it")
        sentiment = publish_sentiment(repository, work / "sentiment")
        log.info("serving %s: classifying held-out digits and sentences over gRPC", repository)
        server_config = ServerConfig(repository=repository, host="127.0.0.1", port=0)
        with ServerThread(server_config) as server, Client(server.address) as client:
            accuracy, count = _classify_heldout(client, heldout_dir, shown)
            sentences = classify_sentences(client)
        print(format_sentences(sentences))
    return DemoResult(
        exported.version,
        fitted.best_accuracy,
        accuracy,
        count,
        sentiment.version,
        sentiment.val_accuracy,
        sentences,
    )


def _classify_heldout(client: Client, heldout_dir: Path, shown: int) -> tuple[float, int]:
    files = sorted(heldout_dir.rglob("*.png"))
    truth = [f.parent.name for f in files]
    response = client.classify_images("digits", files, top_k=3)
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
