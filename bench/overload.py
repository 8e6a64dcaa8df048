"""Overload: is a server past its capacity refused fast, and does it stay fast? Not a test.

    python bench/overload.py                           # 4x the saturating rate, 5 s per phase
    python bench/overload.py --factor 4 --duration-s 10 --layers 48 --concurrency 16
    python bench/overload.py --server-arg=--max-inflight-per-model=24

Starts `onyx serve` in its own process on a generated MLP image model (`--layers` wide MatMuls,
so one request costs about a millisecond or more), then:

1. saturation: a closed loop of `--concurrency` clients; its request rate is the saturating rate
   and its p99 the reference;
2. overload: an open loop at `--factor` x that rate, each request with `--deadline-ms`; the
   server's RSS is sampled all along;
3. recovery: after the load stops, one probe request every 20 ms until one is answered OK within
   2x the saturation p50: the time from the end of the load to that probe is "back to normal".

It prints the share of non-OK answers that are RESOURCE_EXHAUSTED (target >= 90 %), the p99 of
accepted requests under overload against saturation's (target <= 2x), RSS before / peak / after,
and the recovery time (target <= 1 s), then what the server itself answered (from its /metrics):
calls the client counts but the server never answered died before Onyx's code saw them.

The server runs with `--max-inflight-requests` at the saturating concurrency unless
`--server-arg` sets it: beyond what saturates the model, admitting more only makes every accepted
request wait. The default model (`--layers 48`) is compute-bound; with a tiny one (`--layers 4`)
the cost is gRPC's per call, refusing a call costs nearly as much as serving it, and one event
loop cannot shed 4x its capacity (calls expire in gRPC's queues; more workers are the answer).
The Python load generator shares the machine: pin it apart (`taskset`) where you can; the
achieved send rate is printed, so a client that could not keep up shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onyx.bench.runner import free_port, wait_listening
from onyx.bench.scrape import Samples, scrape
from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, VERSION_CONFIG_FILE
from onyx.contract.model_config import save_config, save_version_config, split_config
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
MODEL = "mlp"
SIDE = 16  # 3x16x16 inputs
WIDTH = 512


def write_model(root: Path, layers: int, max_batch_size: int) -> None:
    """`root/mlp/{config.pbtxt, 1/model.onnx, 1/model.pbtxt}`: Flatten, `layers` MatMuls."""
    rng = np.random.default_rng(0)
    features = 3 * SIDE * SIDE
    inits = [numpy_helper.from_array(rng.normal(0, 0.05, (features, WIDTH)).astype("f4"), "in")]
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "in"], ["h0"]),
    ]
    for i in range(layers):
        weight = rng.normal(0, 1 / np.sqrt(WIDTH), (WIDTH, WIDTH)).astype("f4")
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]))
    inits.append(numpy_helper.from_array(rng.normal(0, 0.05, (WIDTH, 2)).astype("f4"), "out"))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "out"], ["logits"]))
    graph = helper.make_graph(
        nodes, MODEL,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    config = pb.ModelConfig(
        name=MODEL, task=pb.TASK_IMAGE, labels=["a", "b"],
        input=pb.TensorSpec(name="image", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 3, SIDE, SIDE]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 2]),
        output_activation=pb.ACTIVATION_SOFTMAX,
        batching=pb.Batching(max_batch_size=max_batch_size, max_queue_delay_us=500),
        instances=1,
    )  # fmt: skip
    config.image.CopyFrom(
        pb.ImagePreprocessing(
            crop_height=SIDE, crop_width=SIDE, interpolation=pb.INTERPOLATION_BILINEAR,
            color_mode=pb.COLOR_MODE_RGB, channel_order=pb.CHANNEL_ORDER_RGB,
            layout=pb.LAYOUT_NCHW, mean=[0.5] * 3, std=[0.5] * 3,
        )
    )  # fmt: skip
    policy, description = split_config(config)
    (root / MODEL / "1").mkdir(parents=True)
    save_config(policy, root / MODEL / CONFIG_FILE)
    save_version_config(description, root / MODEL / "1" / VERSION_CONFIG_FILE)
    onnx.save(model, str(root / MODEL / "1" / MODEL_FILE))


def request_bytes() -> bytes:
    row = np.random.default_rng(1).random((3, SIDE, SIDE), dtype=np.float32)
    tensor = api.Tensor(shape=list(row.shape), data=row.tobytes())
    return api.ClassifyRequest(model=MODEL, inputs=[api.Input(tensor=tensor)]).SerializeToString()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Phase:
    """Outcomes of one phase: latencies of OK answers (s), codes of the others."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.codes: Counter[str] = Counter()

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


async def send(
    call: grpc.aio.UnaryUnaryMultiCallable, payload: bytes, phase: Phase, timeout_s: float
) -> None:
    started = time.perf_counter()
    try:
        await call(payload, timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        phase.codes[exc.code().name] += 1
        return
    phase.latencies.append(time.perf_counter() - started)


async def saturate(
    call: grpc.aio.UnaryUnaryMultiCallable, payload: bytes, concurrency: int, duration_s: float
) -> tuple[Phase, float]:
    phase = Phase()
    end = time.perf_counter() + duration_s

    async def client() -> None:
        while time.perf_counter() < end:
            await send(call, payload, phase, 30.0)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return phase, len(phase.latencies) / (time.perf_counter() - started)


async def overload(
    call: grpc.aio.UnaryUnaryMultiCallable,
    payload: bytes,
    rate: float,
    duration_s: float,
    deadline_s: float,
    pid: int,
    rss: list[float],
) -> tuple[Phase, float]:
    """Open loop: request i starts at i / rate, whatever the server does."""
    phase = Phase()
    tasks: set[asyncio.Task[None]] = set()
    count = int(rate * duration_s)
    started = time.perf_counter()
    next_sample = started
    for index in range(count):
        now = time.perf_counter()
        if now >= next_sample:
            rss.append(rss_mb(pid))
            next_sample = now + 0.25
        await asyncio.sleep(max(0.0, started + index / rate - now))
        task = asyncio.create_task(send(call, payload, phase, deadline_s))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    achieved = count / (time.perf_counter() - started)
    while tasks:
        rss.append(rss_mb(pid))
        await asyncio.wait(set(tasks), timeout=0.25)
    return phase, achieved


async def recover(
    call: grpc.aio.UnaryUnaryMultiCallable, payload: bytes, normal_s: float, load_ended: float
) -> float:
    """Seconds from the end of the load until a probe is answered OK within `normal_s`."""
    while time.perf_counter() - load_ended < 30:
        probe = Phase()
        await send(call, payload, probe, 5.0)
        if probe.latencies and probe.latencies[0] <= normal_s:
            return time.perf_counter() - load_ended
        await asyncio.sleep(0.02)
    return float("inf")


async def measure(address: str, args: argparse.Namespace, pid: int) -> None:
    payload = request_bytes()
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/onyx.v1.Classifier/Classify",
            request_serializer=None,  # the request is serialized once, up front
            response_deserializer=api.ClassifyResponse.FromString,
        )
        await saturate(call, payload, args.concurrency, 1.0)  # warm up
        sat, rate = await saturate(call, payload, args.concurrency, args.duration_s)
        rss_before = rss_mb(pid)
        print(f"saturation: c={args.concurrency}, {rate:.0f} req/s, p50 {sat.p(50) * 1e3:.2f} ms, "
              f"p99 {sat.p(99) * 1e3:.2f} ms, errors {dict(sat.codes)}")  # fmt: skip
        rss: list[float] = []
        target = args.factor * rate
        over, achieved = await overload(
            call, payload, target, args.duration_s, args.deadline_ms / 1e3, pid, rss
        )
        ended = time.perf_counter()
        back = await recover(call, payload, 2 * sat.p(50), ended)
        await asyncio.sleep(1.0)
        rss_after = rss_mb(pid)
    report(args, sat, over, target, achieved, back, (rss_before, max(rss), rss_after))


def report(
    args: argparse.Namespace,
    sat: Phase,
    over: Phase,
    target: float,
    achieved: float,
    back_s: float,
    rss: tuple[float, float, float],
) -> None:
    failed = sum(over.codes.values())
    exhausted = over.codes.get("RESOURCE_EXHAUSTED", 0)
    share = exhausted / failed if failed else 1.0
    ratio = over.p(99) / sat.p(99)
    print(f"overload: {args.factor:g}x = {target:.0f} req/s asked, {achieved:.0f} req/s sent; "
          f"{len(over.latencies)} OK, non-OK {dict(over.codes)}")  # fmt: skip
    print(f"  RESOURCE_EXHAUSTED share of non-OK: {share:.1%}   (target >= 90%)")
    print(f"  p99 accepted: {over.p(99) * 1e3:.2f} ms = {ratio:.2f}x saturation's   "
          "(target <= 2x)")  # fmt: skip
    print(f"  server RSS MB: before {rss[0]:.0f}, peak {rss[1]:.0f}, after {rss[2]:.0f}")
    print(f"  back to normal {back_s:.3f} s after the load stopped   (target <= 1 s)")
    if achieved < 0.9 * target:
        print("  note: the load generator could not keep up; use a heavier --layers")


def server_view(samples: Samples) -> None:
    """What the server itself answered, all phases together: calls missing here against the
    client's count died before the application saw them (in gRPC's queues, or the client's)."""
    handled: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        tags = dict(labels)
        if name == "grpc_server_handled_total" and tags.get("grpc_method") == "Classify":
            handled[tags["grpc_code"]] += int(value)
        elif name == "onyx_requests_refused_total" and value:
            refused[tags["reason"]] += int(value)
    print(f"server answered Classify: {dict(handled)}; refused by reason: {dict(refused)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factor", type=float, default=4.0, help="x the saturating rate")
    parser.add_argument("--duration-s", type=float, default=5.0, help="per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="clients to saturate")
    parser.add_argument("--deadline-ms", type=float, default=1000.0, help="per request")
    parser.add_argument("--layers", type=int, default=48, help="512-wide MatMuls in the model")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--server-arg", action="append", default=[], help="passed to serve")
    args = parser.parse_args()
    server_args = list(args.server_arg)
    if not any(a.startswith("--max-inflight-requests") for a in server_args):
        server_args.append(f"--max-inflight-requests={args.concurrency}")
    with tempfile.TemporaryDirectory() as tmp:
        write_model(Path(tmp), args.layers, args.max_batch_size)
        port, metrics_port = free_port(), free_port()
        command = [
            sys.executable, "-m", "onyx", "serve", "--repository", tmp, "--host", "127.0.0.1",
            "--port", str(port), "--metrics-port", str(metrics_port), "--log-level", "error",
            *server_args,
        ]  # fmt: skip
        print("server:", " ".join(command[2:]))
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ})
        try:
            wait_listening(f"127.0.0.1:{port}", process)
            asyncio.run(measure(f"127.0.0.1:{port}", args, process.pid))
            server_view(scrape(f"http://127.0.0.1:{metrics_port}/metrics"))
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
