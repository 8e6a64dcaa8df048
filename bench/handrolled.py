"""Onyx beside the hand-rolled server it replaces: grpc.aio + one ONNX Runtime session, no batching.

    python bench/handrolled.py                       # bench/models resnet18, c=1 and c=16
    python bench/handrolled.py -c 1 --rounds 20

The hand-rolled server is what a team writes in an afternoon: parse the request, `session.run`
in a thread, answer the top 5. It has no batching, versions, limits or metrics, so it is the
floor a Python gRPC server sets on this machine. Both servers run in their own processes on
the same model file; the client sends the same pre-serialized `Classify` request to each, in
alternating blocks (with raw `session.run` in this process as a third), and reports medians.

    python bench/handrolled.py --serve MODEL_FILE PORT   # (internal) run the hand-rolled server
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

from onyx.bench.baseline import newest_model_file, open_session, time_runs
from onyx.bench.load import CLASSIFY_METHOD, classify_call
from onyx.bench.runner import free_port, spawned_server, wait_listening
from onyx.proto.v1 import classifier_pb2 as api

TOP_K = 5
# ONNX Runtime's pool spins for ~40 ms after a run: let it stop before the next block starts.
SETTLE_S = 0.1


async def serve_handrolled(model_file: Path, port: int) -> None:
    session = open_session(model_file, "cpu")
    input_name = session.get_inputs()[0].name
    pool = ThreadPoolExecutor(1)

    async def classify(request: api.ClassifyRequest, _: object) -> api.ClassifyResponse:
        tensor = request.inputs[0].tensor
        batch = np.frombuffer(tensor.data, np.float32).reshape(1, *tensor.shape)
        loop = asyncio.get_running_loop()
        (logits,) = await loop.run_in_executor(pool, session.run, None, {input_name: batch})
        best = np.argsort(-logits[0])[:TOP_K]
        classes = [api.ClassScore(index=int(i), score=float(logits[0][i])) for i in best]
        return api.ClassifyResponse(results=[api.Classification(classes=classes)])

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    handler = grpc.unary_unary_rpc_method_handler(
        classify,
        request_deserializer=api.ClassifyRequest.FromString,
        response_serializer=api.ClassifyResponse.SerializeToString,
    )
    service, method = CLASSIFY_METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def request_bytes(model: str, shape: list[int]) -> tuple[bytes, np.ndarray]:
    sample = np.random.default_rng(0).random(shape).astype(np.float32)
    tensor = api.Tensor(shape=shape, data=sample.tobytes())
    request = api.ClassifyRequest(model=model, inputs=[api.Input(tensor=tensor)])
    return request.SerializeToString(), sample


async def block(call: grpc.aio.UnaryUnaryMultiCallable, payload: bytes, clients: int,
                seconds: float) -> tuple[float, list[float]]:  # fmt: skip
    """`clients` closed-loop senders for `seconds`: (requests per second, latencies)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def sender() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(payload)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def compare(addresses: dict[str, str], payload: bytes, sample: np.ndarray,
                  model_file: Path, clients: int, rounds: int, seconds: float) -> None:  # fmt: skip
    session = open_session(model_file, "cpu")
    feed = {session.get_inputs()[0].name: sample[None]}
    channels = {name: grpc.aio.insecure_channel(a) for name, a in addresses.items()}
    calls = {name: classify_call(channel) for name, channel in channels.items()}
    for call in calls.values():
        await block(call, payload, clients, 1.0)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in calls}
    latencies: dict[str, list[float]] = {name: [] for name in [*calls, "raw"]}
    for index in range(rounds):
        latencies["raw"] += time_runs(session, feed, seconds)
        await asyncio.sleep(SETTLE_S)
        order = list(calls) if index % 2 == 0 else list(calls)[::-1]
        for name in order:
            rate, taken = await block(calls[name], payload, clients, seconds)
            rates[name].append(rate)
            latencies[name] += taken
            await asyncio.sleep(SETTLE_S)
    for channel in channels.values():
        await channel.close()
    raw_p50 = float(np.median(latencies["raw"]) * 1e3)
    print(f"c={clients}, {rounds} rounds of {seconds:g} s; raw session.run p50 {raw_p50:.2f} ms")
    for name in calls:
        p50 = float(np.median(latencies[name]) * 1e3)
        p99 = float(np.percentile(latencies[name], 99) * 1e3)
        print(
            f"  {name:<11} {np.median(rates[name]):7.1f} req/s   p50 {p50:8.2f} ms "
            f"({p50 - raw_p50:+.2f} vs raw)   p99 {p99:8.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", "-r", type=Path, default=Path("bench/models"))
    parser.add_argument("--model", "-m", default="resnet18")
    parser.add_argument("--concurrency", "-c", default="1,16", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="per block")
    parser.add_argument("--serve", nargs=2, metavar=("MODEL_FILE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_handrolled(Path(args.serve[0]), int(args.serve[1])))
        return
    model_file = newest_model_file(args.repository, args.model)
    shape = list(open_session(model_file, "cpu").get_inputs()[0].shape[1:])
    payload, sample = request_bytes(args.model, shape)
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(model_file), str(port)]
    handrolled = subprocess.Popen(command)
    try:
        with spawned_server(args.repository) as (onyx_address, _metrics):
            wait_listening(f"127.0.0.1:{port}", handrolled)
            addresses = {"onyx": onyx_address, "hand-rolled": f"127.0.0.1:{port}"}
            for clients in (int(c) for c in args.concurrency.split(",") if c.strip()):
                asyncio.run(
                    compare(addresses, payload, sample, model_file, clients, args.rounds,
                            args.seconds)
                )  # fmt: skip
    finally:
        handrolled.terminate()
        handrolled.wait(timeout=30)


if __name__ == "__main__":
    main()
