"""Text-model serving throughput (server vs raw ONNX Runtime) and padding waste. Not a test.

    python bench/text_throughput.py                      # BiLSTM, 1500 requests, 16 in flight
    python bench/text_throughput.py --text               # send raw text: tokenization included

Builds a sentiment-sized BiLSTM with random weights (vocabulary 20k, embedding 128, hidden 128,
max length 512), exports and publishes it into a temporary repository, and draws a realistic mix
of review lengths (log-normal, median ~180 tokens, clipped to 4..512, like IMDb reviews). Then,
on the same pre-tokenized sequences:

- raw ORT: `session.run` in this process over arrival-order batches of max_batch_size, each
  padded to its longest sequence: the in-process ceiling;
- server: `onyx serve` in its own process, one sequence per Classify request, `--concurrency`
  requests in flight; its dynamic batcher forms the batches.

Both are reported as sequences/s and as a ratio, measured in one run (absolute numbers on a
shared 2-core machine move with whatever else runs). Padding waste = padded slots / all slots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import torch

from onyx.bench.runner import wait_listening
from onyx.contract.text import PAD, UNK, Vocabulary, pad_batch
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.train.export import ExportConfig, export_verified
from onyx.train.export.publish import publish
from onyx.train.export.text import build_text_config, example_ids, parity_inputs
from onyx.train.tasks.text.models import TextClassifier, TextModelConfig

# The checkout, so the server subprocess runs this code (a git worktree included).
ROOT = Path(__file__).resolve().parent.parent


def build_repository(root: Path, args: argparse.Namespace) -> Path:
    """Publish a random-weight BiLSTM as `sentiment` under root/models; returns model.onnx."""
    torch.manual_seed(0)
    config = TextModelConfig(
        vocab_size=args.vocab,
        num_classes=2,
        embed_dim=128,
        hidden=128,
        bidirectional=True,
        pooling="last",
    )
    model = TextClassifier(config).eval()
    work = root / "export"
    work.mkdir(parents=True)
    inputs = parity_inputs(args.vocab, args.max_length)
    exporter, diff = export_verified(
        model,
        work / "model.onnx",
        18,
        inputs,
        1e-4,
        1e-3,
        example=example_ids(model.config.vocab_size),
        time_axis=True,
        external_data=False,
    )
    Vocabulary([PAD, UNK, *(f"w{i}" for i in range(2, args.vocab))]).save(work / "vocab.txt")
    checkpoint = {
        "labels": ["negative", "positive"],
        "model_config": {"cell": "lstm"},
        "max_length": args.max_length,
        "tokenizer": "onyx-words-v1",
        "config": {"data": "random weights"},
    }
    export = ExportConfig(
        checkpoint=work,
        name="sentiment",
        repository=root / "models",
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.delay_us,
    )
    model_config = build_text_config(export, checkpoint, exporter, diff, 10)
    _, model_path = publish(root / "models", model_config, work)
    return model_path


def review_lengths(count: int, max_length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(180), 0.7, count), 4, max_length).astype(int)


def padding_waste(lengths: np.ndarray, batch_size: int, pad_to: int = 0) -> float:
    """Padded share of the slots when consecutive sequences form batches."""
    real = padded = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        real += int(chunk.sum())
        padded += len(chunk) * (pad_to or int(chunk.max()))
    return 1 - real / padded


def raw_ort(model_path: Path, sequences: list[np.ndarray], batch_size: int) -> float:
    """Sequences/s of in-process session.run over arrival-order padded batches."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    batches = [
        pad_batch(sequences[i : i + batch_size]) for i in range(0, len(sequences), batch_size)
    ]
    session.run(None, {"input": batches[0]})  # warm-up
    started = time.perf_counter()
    for batch in batches:
        session.run(None, {"input": batch})
    return len(sequences) / (time.perf_counter() - started)


def request(ids: np.ndarray, as_text: bool) -> api.ClassifyRequest:
    if as_text:
        item = api.Input(text=" ".join(f"w{i}" for i in ids))
    else:
        item = api.Input(tensor=api.Tensor(shape=[len(ids)], data=ids.astype("<i8").tobytes()))
    return api.ClassifyRequest(model="sentiment", inputs=[item], top_k=1)


async def closed_loop(address: str, requests: list[api.ClassifyRequest], concurrency: int) -> float:
    """Sequences/s with `concurrency` requests in flight until all are answered."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = api_grpc.ClassifierStub(channel)
        await asyncio.gather(*(stub.Classify(r) for r in requests[:concurrency]))  # warm-up
        pending = iter(requests)

        async def worker() -> None:
            for item in pending:
                await stub.Classify(item, timeout=60)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.perf_counter() - started)


def start_server(repository: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "onyx",
        "serve",
        "-r",
        str(repository),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": f"{ROOT / 'serve'}{os.pathsep}{ROOT / 'train'}"}
    )
    wait_listening(f"127.0.0.1:{port}", server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="raw/server alternations")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=50071)
    parser.add_argument("--text", action="store_true", help="send text (server tokenizes)")
    args = parser.parse_args()
    lengths = review_lengths(args.requests, args.max_length)
    rng = np.random.default_rng(1)
    sequences = [rng.integers(2, args.vocab, n).astype(np.int64) for n in lengths]
    requests = [request(s, args.text) for s in sequences]
    with tempfile.TemporaryDirectory(prefix="onyx-text-bench-") as tmp:
        model_path = build_repository(Path(tmp), args)
        server = start_server(Path(tmp) / "models", args.port)
        rounds = []
        try:
            for _ in range(args.rounds):  # alternate, so both see the same background load
                raw = raw_ort(model_path, sequences, args.max_batch_size)
                served = asyncio.run(
                    closed_loop(f"127.0.0.1:{args.port}", requests, args.concurrency)
                )
                rounds.append((raw, raw_ort(model_path, sequences[:200], 1), served))
        finally:
            server.terminate()
            server.wait(30)
    report(args, lengths, rounds)


def report(
    args: argparse.Namespace, lengths: np.ndarray, rounds: list[tuple[float, float, float]]
) -> None:
    size = args.max_batch_size
    print(
        f"lengths: median {np.median(lengths):.0f}, mean {lengths.mean():.0f}, "
        f"p90 {np.percentile(lengths, 90):.0f}, max {lengths.max()} tokens; {len(lengths)} requests"
    )
    kind = "text" if args.text else "token ids"
    for raw, single, served in rounds:
        print(
            f"raw ORT batches of {size} {raw:6.1f} seq/s | raw ORT batch 1 {single:6.1f} seq/s | "
            f"server ({kind}, {args.concurrency} in flight) {served:6.1f} seq/s | "
            f"server / raw batched {served / raw:.2f}"
        )
    ratios = [served / raw for raw, _, served in rounds]
    best = [served / max(raw, single) for raw, single, served in rounds]
    print(
        f"median server / raw ORT batched: {np.median(ratios):.2f}; "
        f"server / best raw (batched or batch 1): {np.median(best):.2f}"
    )
    for batch in sorted({4, 8, size}):
        print(
            f"padding waste, batches of {batch:2d}: arrival order padded to longest "
            f"{padding_waste(lengths, batch):5.1%}, padded to max_length "
            f"{padding_waste(lengths, batch, args.max_length):5.1%}, length-sorted "
            f"(bucketing bound) {padding_waste(np.sort(lengths), batch):5.1%}"
        )


if __name__ == "__main__":
    main()
