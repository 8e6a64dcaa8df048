"""Per model version request statistics, as Triton's statistics extension defines them.

KServe `ModelStatistics` (gRPC) and `GET /v2/models/{name}/stats` (REST) answer these, so
`perf_analyzer` prints its server-side section and Triton's tools can read Onyx:

* success / fail: whole requests, from choosing the version to the response built;
* queue: waiting in the dynamic batcher; compute_input: decoding the request into the model's
  input array; compute_infer: on the model (in whatever batch the request rode in);
  compute_output: building the response -- these four for successful requests only;
* inference_count / execution_count: inputs (batch rows) and batches run by the model;
  last_inference: when the last successful request finished (ms since the epoch).

Everything is recorded on the event loop (the pipeline and the batcher's observer), so plain
integers suffice. Counts accumulate for the life of the process, as Triton's do.

    statistics = Statistics()
    statistics.version("pets", 1).succeeded(StageTimes(total_s=0.01, infer_s=0.008))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from onyx.serve.batching import BatchObserver

NS_PER_S = 1_000_000_000


@dataclass
class Duration:
    """A count and the cumulative nanoseconds of what was counted (`StatisticDuration`)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += max(0, round(seconds * NS_PER_S))


@dataclass(frozen=True)
class StageTimes:
    """Where one successful request spent its time, in seconds."""

    total_s: float
    input_s: float = 0.0
    queue_s: float = 0.0
    infer_s: float = 0.0
    output_s: float = 0.0


@dataclass
class VersionStatistics:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    # Batch size -> the model's time on batches of that size (Triton's batch_stats).
    batches: dict[int, Duration] = field(default_factory=dict)

    def succeeded(self, times: StageTimes) -> None:
        self.success.add(times.total_s)
        self.compute_input.add(times.input_s)
        self.queue.add(times.queue_s)
        self.compute_infer.add(times.infer_s)
        self.compute_output.add(times.output_s)
        self.last_inference_ms = int(time.time() * 1000)

    def failed(self, seconds: float) -> None:
        self.fail.add(seconds)


class _VersionBatches:
    """The batcher's observer for one version: executions, inferences, per-size compute."""

    def __init__(self, statistics: VersionStatistics) -> None:
        self._statistics = statistics

    def batch_started(self, size: int, queue_waits_s: Sequence[float]) -> None:
        pass  # queue time is taken per request (the pipeline), where its count is known

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None:
        if not ok:
            return
        self._statistics.execution_count += 1
        self._statistics.inference_count += size
        self._statistics.batches.setdefault(size, Duration()).add(compute_s)


class _Both:
    """Two batch observers as one (the metrics' and the statistics')."""

    def __init__(self, first: BatchObserver, second: BatchObserver) -> None:
        self._first, self._second = first, second

    def batch_started(self, size: int, queue_waits_s: Sequence[float]) -> None:
        self._first.batch_started(size, queue_waits_s)
        self._second.batch_started(size, queue_waits_s)

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None:
        self._first.batch_finished(size, compute_s, ok)
        self._second.batch_finished(size, compute_s, ok)


class Statistics:
    """Every model version's statistics, by (model name, version)."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], VersionStatistics] = {}

    def version(self, model: str, version: int) -> VersionStatistics:
        """The statistics of one version (zeros when it has served nothing yet)."""
        return self._versions.setdefault((model, version), VersionStatistics())

    def batch_observer(self, model: str, version: int) -> BatchObserver:
        return _VersionBatches(self.version(model, version))

    def observing(self, model: str, version: int, other: BatchObserver | None) -> BatchObserver:
        """The observer a version's batcher gets: this one, and `other` when there is one."""
        own = self.batch_observer(model, version)
        return own if other is None else _Both(own, other)
