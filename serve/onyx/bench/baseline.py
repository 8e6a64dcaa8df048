"""The ceiling: ONNX Runtime `session.run` in-process on the same model file, no server."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onyx.contract.layout import model_file, version_numbers
from onyx.serve.execution.runtime import Device, choose_providers


@dataclass(frozen=True)
class BaselineResult:
    batch_size: int
    inputs_per_s: float
    p50_ms: float


def newest_model_file(repository: Path, model: str) -> Path:
    """The model file of the newest version of `model` in a repository."""
    versions = version_numbers(repository / model)
    if not versions:
        raise FileNotFoundError(f"no versions of {model!r} under {repository}")
    return model_file(repository / model, versions[-1])


def open_session(model_path: Path, device: Device = "auto") -> ort.InferenceSession:
    """A plain session as a hand-written script would open it, with full graph optimisation and
    ORT's default thread pool."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers, _reason = choose_providers(device)
    return ort.InferenceSession(str(model_path), options, providers=providers)


def time_runs(
    session: ort.InferenceSession, feed: dict[str, np.ndarray], duration_s: float
) -> list[float]:
    """Seconds of each back-to-back `session.run` for `duration_s` (at least three runs)."""
    latencies: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s or len(latencies) < 3:
        begin = time.perf_counter()
        session.run(None, feed)
        latencies.append(time.perf_counter() - begin)
    return latencies


def measure_batch(
    session: ort.InferenceSession, feed_name: str, batch: np.ndarray, duration_s: float
) -> BaselineResult:
    session.run(None, {feed_name: batch})  # warm-up: first run at a shape allocates
    started = time.perf_counter()
    latencies = time_runs(session, {feed_name: batch}, duration_s)
    elapsed = time.perf_counter() - started
    return BaselineResult(
        batch_size=len(batch),
        inputs_per_s=len(latencies) * len(batch) / elapsed,
        p50_ms=float(np.median(latencies) * 1e3),
    )


def measure(
    model_path: Path,
    sample: np.ndarray,
    batch_sizes: Sequence[int],
    duration_s: float,
    device: Device = "auto",
) -> list[BaselineResult]:
    """Throughput and median latency of raw `session.run` at each batch size, with the
    server's session settings (full graph optimisation, ORT's default thread pool)."""
    session = open_session(model_path, device)
    feed_name = session.get_inputs()[0].name
    return [
        measure_batch(session, feed_name, np.repeat(sample[None], size, axis=0), duration_s)
        for size in batch_sizes
    ]
