"""fp32 vs int8 variants, in-process and through the server, side by side. Not a test.

    python bench/variants.py                       # Lite0 (fine-tuned), ResNet18, sentiment LSTM
    python bench/variants.py --models resnet18 --rounds 2 --seconds 3

Builds each model and publishes it with `onyx export --variant int8` (the library call), so the
int8 version is the one the gate accepted:

- lite0: EfficientNet-Lite0 with its real ImageNet weights (package efficientnet-lite0-pytorch-
  model), fine-tuned on the photo set (`onyx.train.data.photos`, real photos,
  leak-free split):
  its gate figures are real accuracy on that validation split;
- resnet18: torchvision ResNet18 from random weights, trained one step (speed does not depend on
  the weights; its accuracy is meaningless, so its gate is opened: --max-accuracy-drop 100);
- sentiment: the demo's LSTM on generated reviews (dynamic int8).

Then, for each model, interleaved round by round (fp32, int8, fp32, int8, ...) so that background
load hits both alike: in-process ONNX Runtime at batch 1 and 8, and `onyx serve` (one server,
both versions loaded; requests name the version) at concurrency 1 and 16, one preprocessed input
per request. Prints items/s, p50/p99 latency (server), the int8/fp32 ratio (median over rounds)
and the gate's accuracy figures. Absolute numbers move with the machine's load; the ratios are
what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import torch

from onyx.bench.runner import wait_listening
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.data.photos import PhotoSetSizes, build_photo_dataset
from onyx.train.demo.sentiment import publish_sentiment
from onyx.train.engine.loop import fit
from onyx.train.export import ExportConfig, ExportResult, export_checkpoint
from onyx.train.export.gate import VariantRefused
from onyx.train.tasks.registry import task_for

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("lite0", "resnet18", "sentiment")


@dataclass
class Published:
    name: str
    result: ExportResult
    inputs: np.ndarray  # (N, ...) preprocessed inputs to send
    refused: str = ""  # why the gate refused the variant (then measured with the gate opened)


@dataclass
class Rates:
    """Per measurement (e.g. "server c=16"), per precision: one value per round."""

    rate: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    p50: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    p99: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, what: str, precision: str, rate: float, latencies: list[float]) -> None:
        self.rate.setdefault(what, {}).setdefault(precision, []).append(rate)
        if latencies:
            ms = np.array(latencies) * 1e3
            self.p50.setdefault(what, {}).setdefault(precision, []).append(float(np.median(ms)))
            p99 = float(np.percentile(ms, 99))
            self.p99.setdefault(what, {}).setdefault(precision, []).append(p99)


def photo_images(work: Path) -> Path:
    # 240 validation crops: one flipped answer moves accuracy by 0.4 points, not 1.7.
    return build_photo_dataset(work / "photos", sizes=PhotoSetSizes(train=20, val=40, size=256))


def publish_image(name: str, data: Path, work: Path, repository: Path) -> Published:
    lite0 = name == "lite0"
    train = ImageTrainConfig(
        data=data, out_dir=work / name, model="efficientnet_lite0" if lite0 else "resnet18",
        weights="imagenet" if lite0 else "none", image_size=224, epochs=2 if lite0 else 1,
        max_steps=0 if lite0 else 1, batch_size=16, lr=1e-3, freeze_epochs=1 if lite0 else 0,
        augment=AugmentConfig.off(), plots=False,
    )  # fmt: skip
    checkpoint = fit(task_for(train)).best_checkpoint
    export = ExportConfig(
        checkpoint, name, repository, variant="int8",
        max_accuracy_drop=1.0 if lite0 else 100.0, min_agreement=0.99 if lite0 else 0.0,
    )  # fmt: skip
    result, refused = export_gated(export, work / f"{name}-export")
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((64, 3, 224, 224), dtype=np.float32)
    return Published(name, result, inputs, refused)


def publish_text(work: Path, repository: Path) -> Published:
    demo = publish_sentiment(work / "sentiment-fp32-only", work / "sentiment", device="cpu")
    export = ExportConfig(demo.fit.best_checkpoint, "sentiment", repository, variant="int8")
    result, refused = export_gated(export, work / "sentiment-export")
    rng = np.random.default_rng(0)
    # The demo's max length is 64 tokens: full-length reviews, the costliest case.
    vocabulary = len((result.model_path.parent / "vocab.txt").read_text().splitlines())
    ids = rng.integers(2, vocabulary, (64, 64)).astype(np.int64)
    return Published("sentiment", result, ids, refused)


def export_gated(export: ExportConfig, work: Path) -> tuple[ExportResult, str]:
    """(result, "") when the variant passes its gate; when refused, the refusal, and a result
    exported with the gate opened, so that its speed can still be measured."""
    work.mkdir(parents=True)
    try:
        return export_checkpoint(export, work), ""
    except VariantRefused as exc:
        opened = replace(export, max_accuracy_drop=100.0, min_agreement=0.0)
        shutil.rmtree(work)
        work.mkdir()
        return export_checkpoint(opened, work), str(exc)


def in_process(path: Path, inputs: np.ndarray, batch: int, seconds: float) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    session.run(["logits"], {"input": inputs[:batch]})  # warm-up
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = inputs[i : i + batch] if i + batch <= len(inputs) else inputs[:batch]
        session.run(["logits"], {"input": chunk})
        done, i = done + len(chunk), (i + batch) % len(inputs)
    return done / (time.perf_counter() - start)


def request(name: str, version: int, row: np.ndarray) -> api.ClassifyRequest:
    dtype = "<i8" if row.dtype == np.int64 else "<f4"
    tensor = api.Tensor(shape=list(row.shape), data=row.astype(dtype).tobytes())
    return api.ClassifyRequest(model=name, version=version, inputs=[api.Input(tensor=tensor)],
                               top_k=1)  # fmt: skip


async def closed_loop(
    address: str, requests: list[api.ClassifyRequest], concurrency: int, seconds: float
) -> tuple[float, list[float]]:
    """(requests/s, latencies) with `concurrency` requests in flight for `seconds`."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = api_grpc.ClassifierStub(channel)
        await asyncio.gather(*(stub.Classify(r) for r in requests[:concurrency]))  # warm-up
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                await stub.Classify(requests[i % len(requests)], timeout=60)
                latencies.append(time.perf_counter() - sent)
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return len(latencies) / (time.perf_counter() - started), latencies


def start_server(repository: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "onyx", "serve", "-r", str(repository), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'serve'}{os.pathsep}{ROOT / 'train'}"}
    server = subprocess.Popen(command, env=env)
    wait_listening(f"127.0.0.1:{port}", server)
    return server


def measure(model: Published, address: str, args: argparse.Namespace) -> Rates:
    rates = Rates()
    versions = {"fp32": model.result.version, "int8": model.result.variant_version}
    folder = model.result.model_path.parent.parent
    for _ in range(args.rounds):
        for precision, version in versions.items():  # interleaved: fp32, int8, fp32, int8, ...
            path = folder / str(version) / "model.onnx"
            for batch in (1, 8):
                rate = in_process(path, model.inputs, batch, args.seconds)
                rates.add(f"in-process b={batch}", precision, rate, [])
            requests = [request(model.name, version, row) for row in model.inputs]
            for concurrency in (1, 16):
                rate, latencies = asyncio.run(
                    closed_loop(address, requests, concurrency, args.seconds)
                )
                rates.add(f"server c={concurrency}", precision, rate, latencies)
    return rates


def report(model: Published, rates: Rates) -> None:
    gate = model.result.gate
    print(f"\n{model.name}: fp32 version {model.result.version}, int8 version "
          f"{model.result.variant_version}")  # fmt: skip
    if model.refused:
        print(f"  REFUSED by the gate ({model.refused}); speed measured with the gate opened")
    if gate is not None:
        print(f"  gate: {gate.describe()}")
    for what, by_precision in rates.rate.items():
        fp32, int8 = by_precision["fp32"], by_precision["int8"]
        ratios = [i / f for i, f in zip(int8, fp32, strict=True)]
        line = (f"  {what:16s} fp32 {statistics.median(fp32):8.1f}/s  int8 "
                f"{statistics.median(int8):8.1f}/s  x{statistics.median(ratios):.2f} "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
        if what in rates.p50:
            p50, p99 = rates.p50[what], rates.p99[what]
            line += (f"  p50 {statistics.median(p50['fp32']):.1f} -> "
                     f"{statistics.median(p50['int8']):.1f} ms, p99 "
                     f"{statistics.median(p99['fp32']):.1f} -> "
                     f"{statistics.median(p99['int8']):.1f} ms")  # fmt: skip
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma list of " + "/".join(MODELS)
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement and round")
    parser.add_argument("--port", type=int, default=50073)
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("onyx.train.export.variants").setLevel(logging.INFO)  # the gate's attempts
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="onyx-variants-bench-") as tmp:
        work, repository = Path(tmp), Path(tmp) / "models"
        data = photo_images(work) if set(names) & {"lite0", "resnet18"} else work
        published = [
            publish_text(work, repository) if name == "sentiment"
            else publish_image(name, data, work, repository)
            for name in names
        ]  # fmt: skip
        server = start_server(repository, args.port)
        print(f"\n{args.rounds} interleaved rounds of {args.seconds:g} s per measurement; "
              f"{os.cpu_count()} CPUs", flush=True)  # fmt: skip
        try:
            for model in published:  # each reported as soon as measured
                report(model, measure(model, f"127.0.0.1:{args.port}", args))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
