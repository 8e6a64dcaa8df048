"""Orchestrates a benchmark: optional server process, load levels, scrapes, and the baseline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from tqdm import tqdm

from onyx.bench.load import RunResult, classify_call, closed_loop, make_sender, open_loop
from onyx.bench.scrape import scrape, server_split
from onyx.client.channels import ChannelOptions, open_aio_channel
from onyx.contract.dtypes import DTYPES, wire_dtype
from onyx.contract.text import load_encoder
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import InputLimits
from onyx.serve.inputs import decode_inputs

SEQUENCE_LENGTH = 32  # for inputs with a dynamic time axis


@dataclass(frozen=True)
class BenchConfig:
    server: str
    model: str
    concurrency: tuple[int, ...] = (1, 4, 16)
    rates: tuple[float, ...] = ()
    duration_s: float = 10.0
    max_requests: int = 100_000
    warmup_s: float = 2.0
    inputs_per_request: int = 1
    # What to send: an image file, a text, or (neither) a random preprocessed tensor.
    image: Path | None = None
    text: str | None = None
    metrics_url: str | None = None
    timeout_s: float = 30.0
    # Open loop: requests beyond this many in flight are dropped (and counted).
    max_inflight: int = 1024
    # TLS, and round robin over every address `dns:///host:port` resolves to. No retries: a
    # benchmark counts a RESOURCE_EXHAUSTED answer, it does not hide it.
    channel: ChannelOptions = field(default_factory=lambda: ChannelOptions(max_attempts=1))


def build_input(config: BenchConfig, model: pb.ModelConfig, seed: int = 0) -> api.Input:
    if config.image is not None:
        return api.Input(image=config.image.read_bytes())
    if config.text is not None:
        return api.Input(text=config.text)
    dims = [SEQUENCE_LENGTH if d == -1 else d for d in model.input.dims[1:]]
    dtype = DTYPES[model.input.dtype].numpy
    rng = np.random.default_rng(seed)
    values = rng.integers(2, 100, dims) if np.issubdtype(dtype, np.integer) else rng.random(dims)
    array = values.astype(wire_dtype(model.input.dtype))
    return api.Input(tensor=api.Tensor(shape=dims, data=array.tobytes()))


def model_sample(single: api.Input, model: pb.ModelConfig, version_dir: Path) -> np.ndarray:
    """The preprocessed array of one input, exactly as the server makes it (for the baseline);
    text models are tokenized with the vocabulary published in `version_dir`."""
    encoder = load_encoder(model.text, version_dir) if model.task == pb.TASK_TEXT else None
    sample: np.ndarray = decode_inputs([single], model, InputLimits(), encoder)[0]
    return sample


def run_levels(config: BenchConfig, single: api.Input) -> list[RunResult]:
    """Every load level against the server, each request carrying `single` repeatedly."""
    request = api.ClassifyRequest(model=config.model, inputs=[single] * config.inputs_per_request)
    return asyncio.run(_run_levels(config, request))


async def _run_levels(config: BenchConfig, request: api.ClassifyRequest) -> list[RunResult]:
    results = []
    async with open_aio_channel(config.server, config.channel) as channel:
        call = classify_call(channel)
        payload = request.SerializeToString()
        warm = RunResult("closed", 1, config.inputs_per_request)
        await closed_loop(
            make_sender(call, payload, warm, config.timeout_s), 2, config.warmup_s, 10_000,
            lambda _: None,
        )  # fmt: skip
        levels = [("closed", float(c)) for c in config.concurrency]
        levels += [("open", r) for r in config.rates]
        for mode, level in levels:
            results.append(await _run_level(call, payload, config, mode, level))
    return results


async def _run_level(
    call: grpc.aio.UnaryUnaryMultiCallable, payload: bytes, config: BenchConfig,
    mode: str, level: float,
) -> RunResult:  # fmt: skip
    result = RunResult(mode, level, config.inputs_per_request)
    send = make_sender(call, payload, result, config.timeout_s)
    before = scrape(config.metrics_url) if config.metrics_url else None
    label = f"{mode} {'c' if mode == 'closed' else 'rps'}={level:g}"
    with tqdm(desc=label, unit="req", leave=False, dynamic_ncols=True, file=sys.stderr) as bar:
        if mode == "closed":
            result.seconds = await closed_loop(
                send, int(level), config.duration_s, config.max_requests, bar.update
            )
        else:
            result.seconds, result.dropped = await open_loop(
                send, level, config.duration_s, config.max_requests, config.max_inflight,
                bar.update,
            )  # fmt: skip
    if before is not None and config.metrics_url:
        result.server = server_split(before, scrape(config.metrics_url), config.model)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def spawned_server(repository: Path, extra_args: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """Run `onyx serve` in its own process (so the load generator does not share its GIL);
    yields (grpc address, metrics url)."""
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "onyx", "serve", "--repository", str(repository),
        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port),
        "--log-level", "warning", *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(command)
    address = f"127.0.0.1:{port}"
    try:
        wait_listening(address, process)
        yield address, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_listening(address: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Return once a gRPC server started as `process` accepts calls on `address` (`onyx serve`
    only starts listening once its models are loaded); fail if the process exits first."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            try:
                ready.result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    raise TimeoutError(f"nothing answered on {address} within {timeout_s:.0f}s")
