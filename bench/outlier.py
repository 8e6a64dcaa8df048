"""One client sending maximum-size requests must not stall everyone else (issue 12). Not a test.

    python bench/outlier.py                      # 2 rounds of 8 s per phase
    python bench/outlier.py --seconds 15 --rounds 3

Publishes a text model whose cost grows with the tokens it reads (embedding -> dense tanh layer
over every token -> mean -> logits; vocabulary 5000, max length 512) and starts `onyx serve` on it
in its own process. Normal traffic: `--concurrency` clients in a closed loop, one short review
each (log-normal, median 40 tokens) as raw token ids. Then the same traffic while `--outliers`
clients send the largest request the server accepts: `--max-inputs` inputs of max_length ids each.
Prints normal-traffic requests/s alone and beside the outliers, and their ratio (target >= 0.5),
alternating the phases so both see the same background load. Also checks that ids past
max_length are refused with INVALID_ARGUMENT.
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
import onnx
from onnx import TensorProto, helper, numpy_helper

from onyx.bench.runner import wait_listening
from onyx.contract.text import PAD, TOKENIZER_NAME, UNK, Vocabulary
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.export.publish import publish

ROOT = Path(__file__).resolve().parent.parent
VOCAB, EMBED, HIDDEN = 5000, 64, 256


def build_repository(root: Path, max_length: int, max_batch_size: int) -> Path:
    rng = np.random.default_rng(0)
    weights = {
        "embedding": rng.standard_normal((VOCAB, EMBED)).astype(np.float32),
        "w1": (rng.standard_normal((EMBED, HIDDEN)) / 8).astype(np.float32),
        "w2": (rng.standard_normal((HIDDEN, 2)) / 16).astype(np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input"], ["vectors"]),
            helper.make_node("MatMul", ["vectors", "w1"], ["hidden"]),
            helper.make_node("Tanh", ["hidden"], ["active"]),
            helper.make_node("ReduceMean", ["active"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w2"], ["logits"]),
        ],
        "outlier",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", "time"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    work = root / "export"
    work.mkdir(parents=True)
    onnx.save(model, str(work / "model.onnx"))
    Vocabulary([PAD, UNK, *(f"w{i}" for i in range(2, VOCAB))]).save(work / "vocab.txt")
    config = pb.ModelConfig(
        name="words",
        task=pb.TASK_TEXT,
        labels=["negative", "positive"],
        input=pb.TensorSpec(name="input", dtype=pb.DATA_TYPE_INT64, dims=[-1, -1]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 2]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        text=pb.TextPreprocessing(
            vocabulary_file="vocab.txt", max_length=max_length, pad_id=0, unk_id=1,
            tokenizer=TOKENIZER_NAME,
        ),
        batching=pb.Batching(max_batch_size=max_batch_size, max_queue_delay_us=2000),
    )  # fmt: skip
    publish(root / "models", config, work)
    return root / "models"


def ids_request(lengths: list[int], rng: np.random.Generator) -> api.ClassifyRequest:
    inputs = [
        api.Input(
            tensor=api.Tensor(shape=[n], data=rng.integers(2, VOCAB, n).astype("<i8").tobytes())
        )
        for n in lengths
    ]
    return api.ClassifyRequest(model="words", inputs=inputs, top_k=1)


async def normal_traffic(stub: api_grpc.ClassifierStub, args: argparse.Namespace) -> float:
    """Requests/s of `concurrency` closed-loop clients over `seconds`."""
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.lognormal(np.log(40), 0.6, 512), 4, args.max_length).astype(int)
    requests = [ids_request([int(n)], rng) for n in lengths]
    done = 0
    stop = time.monotonic() + args.seconds

    async def client(offset: int) -> None:
        nonlocal done
        index = offset
        while time.monotonic() < stop:
            await stub.Classify(requests[index % len(requests)], timeout=120)
            done += 1
            index += args.concurrency

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(args.concurrency)))
    return done / (time.monotonic() - started)


async def outlier_traffic(stub: api_grpc.ClassifierStub, args: argparse.Namespace) -> int:
    """Send maximum-size requests until cancelled; returns how many were answered."""
    request = ids_request([args.max_length] * args.max_inputs, np.random.default_rng(2))
    answered = 0
    try:
        while True:
            await stub.Classify(request, timeout=300)
            answered += 1
    except asyncio.CancelledError:
        return answered


async def one_round(address: str, args: argparse.Namespace) -> tuple[float, float, int]:
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 256 * 2**20)]
    ) as channel:
        stub = api_grpc.ClassifierStub(channel)
        alone = await normal_traffic(stub, args)
        outliers = [
            asyncio.ensure_future(outlier_traffic(stub, args)) for _ in range(args.outliers)
        ]
        await asyncio.sleep(0.5)  # the outliers are in the queue before the measurement starts
        beside = await normal_traffic(stub, args)
        for task in outliers:
            task.cancel()
        answered = sum(await asyncio.gather(*outliers))
        return alone, beside, answered


async def refused_past_max_length(address: str, max_length: int) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        request = ids_request([max_length + 1], np.random.default_rng(3))
        try:
            await api_grpc.ClassifierStub(channel).Classify(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return "OK (not refused!)"


def start_server(repository: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "onyx", "serve", "-r", str(repository), "--host", "127.0.0.1",
        "--port", str(args.port), "--device", "cpu", "--log-level", "warning",
        "--max-inputs", str(args.max_inputs), "--max-message-bytes", str(256 * 2**20),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'serve'}{os.pathsep}{ROOT / 'train'}"}
    server = subprocess.Popen(command, env=env)
    wait_listening(f"127.0.0.1:{args.port}", server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--outliers", type=int, default=1)
    parser.add_argument("--max-inputs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--port", type=int, default=50073)
    args = parser.parse_args()
    address = f"127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="onyx-outlier-bench-") as tmp:
        server = start_server(
            build_repository(Path(tmp), args.max_length, args.max_batch_size), args
        )
        try:
            print(
                f"past max_length: {asyncio.run(refused_past_max_length(address, args.max_length))}"
            )
            ratios = []
            for number in range(args.rounds):
                alone, beside, answered = asyncio.run(one_round(address, args))
                ratios.append(beside / alone)
                print(
                    f"round {number + 1}: normal traffic alone {alone:7.1f} req/s | beside "
                    f"{args.outliers} max-size client(s) {beside:7.1f} req/s "
                    f"({answered} max-size requests of {args.max_inputs}x{args.max_length} ids "
                    f"answered) | ratio {beside / alone:.2f}"
                )
        finally:
            server.terminate()
            server.wait(30)
    print(f"median ratio (normal traffic with / without max-size clients): {np.median(ratios):.2f}"
          " (target >= 0.5)")  # fmt: skip


if __name__ == "__main__":
    main()
