"""Load generation against a running Onyx server, and the raw ONNX Runtime baseline beside it.

    onyx bench --model resnet18 --concurrency 1,4,16 --baseline --repository bench/models

Closed loop: N clients each send a request as soon as their last one returned. Open loop:
requests start at a fixed rate whatever the server does (in-flight requests are capped, and what
the cap refuses is counted as dropped). Every run is bounded in time and request count.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from onyx.proto.v1 import classifier_pb2 as api

Send = Callable[[], Coroutine[Any, Any, None]]
Progress = Callable[[int], object]


@dataclass
class RunResult:
    """One load level: its latencies (seconds), outcomes and wall time."""

    mode: str  # "closed" or "open"
    level: float  # concurrency, or requests per second
    inputs_per_request: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    server: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Inputs classified per second."""
        return self.ok * self.inputs_per_request / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "level": self.level,
            "requests_ok": self.ok,
            "inputs_per_s": round(self.throughput, 2),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p90_ms": round(self.percentile_ms(90), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "max_ms": round(max(self.latencies, default=float("nan")) * 1e3, 3),
            "errors": dict(self.errors),
            "dropped": self.dropped,
            "server": self.server,
        }


CLASSIFY_METHOD = "/onyx.v1.Classifier/Classify"


def classify_call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
    """Classify taking an already-serialized request: like perf_analyzer, the load generator
    prepares its request once, so the client's own protobuf work is not timed as the server's."""
    return channel.unary_unary(
        CLASSIFY_METHOD,
        request_serializer=None,  # bytes go out as they are
        response_deserializer=api.ClassifyResponse.FromString,
    )


def make_sender(
    call: grpc.aio.UnaryUnaryMultiCallable, payload: bytes, result: RunResult, timeout_s: float
) -> Send:
    """A coroutine function that sends `payload` once and records its latency or error code."""

    async def send() -> None:
        started = time.perf_counter()
        try:
            await call(payload, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            result.errors[exc.code().name] += 1
            return
        result.latencies.append(time.perf_counter() - started)

    return send


async def closed_loop(
    send: Send, concurrency: int, duration_s: float, max_requests: int, progress: Progress
) -> float:
    """Run `concurrency` back-to-back senders until time or count runs out; returns seconds."""
    deadline = time.perf_counter() + duration_s
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            await send()
            progress(1)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def open_loop(
    send: Send, rate: float, duration_s: float, max_requests: int, max_inflight: int,
    progress: Progress,
) -> tuple[float, int]:  # fmt: skip
    """Start requests at `rate` per second; returns (seconds, requests dropped at the cap)."""
    inflight: set[asyncio.Task[None]] = set()
    dropped = 0
    count = min(max_requests, max(1, int(rate * duration_s)))
    started = time.perf_counter()
    for index in range(count):
        await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
        if len(inflight) >= max_inflight:
            dropped += 1
            continue
        task = asyncio.create_task(send())
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        task.add_done_callback(lambda _: progress(1))
    await asyncio.gather(*inflight)
    return time.perf_counter() - started, dropped
