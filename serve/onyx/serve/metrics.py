"""Every Prometheus metric the server exports, in one place, on an injectable registry.

Latencies are histograms in seconds (buckets from 0.5 ms to 10 s), so dashboards can show
p50/p95/p99 per model and aggregate across replicas -- not cumulative microsecond counters.
Labels are bounded: model and version come only from the repository (unknown model names in
requests are counted by the gRPC metrics, never as labels).

    metrics = ServerMetrics(CollectorRegistry())      # tests: a fresh registry each
    endpoint = metrics.serve_http(50052, "127.0.0.1")  # GET :50052/metrics
    endpoint.close()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from onyx.contract.errors import Overloaded, code_name
from onyx.serve.observers import Observers

if TYPE_CHECKING:
    from onyx.serve.repository import Repository

PREFIX = "onyx"
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
MODEL_LABELS = ("model", "version")


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "Classify requests by outcome (gRPC status code name).",
            [*MODEL_LABELS, "code"], registry=r,
        )  # fmt: skip
        self.inputs = Counter(
            f"{PREFIX}_inputs", "Inputs classified successfully.", MODEL_LABELS, registry=r
        )
        self.request_seconds = _latency(r, "request_duration", "End-to-end Classify latency.")
        self.preprocess_seconds = _latency(
            r, "preprocess_duration", "Decoding and preprocessing time per request."
        )
        self.queue_seconds = _latency(r, "queue_duration", "Time inputs waited in the batch queue.")
        self.compute_seconds = _latency(r, "compute_duration", "ONNX Runtime time per batch.")
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Inputs per batch formed by the dynamic batcher.",
            MODEL_LABELS, buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_failures = Counter(
            f"{PREFIX}_batch_failures", "Batches whose inference failed.", MODEL_LABELS, registry=r
        )
        self.inflight = Gauge(
            f"{PREFIX}_inflight_requests", "Classify requests being handled.", MODEL_LABELS,
            registry=r,
        )  # fmt: skip
        self.load_failures = Counter(
            f"{PREFIX}_model_load_failures", "Model version loads that failed.", ["model"],
            registry=r,
        )  # fmt: skip
        self.loads = Counter(
            f"{PREFIX}_model_loads", "Model version loads that succeeded (a reload counts again).",
            MODEL_LABELS, registry=r,
        )  # fmt: skip
        self.refused = Counter(
            f"{PREFIX}_requests_refused",
            "Inference requests refused before running, by reason: inflight (the server's bound), "
            "model_inflight (the model's), deadline (cannot start in time), queue_full (the "
            "batch queue's bound). Model is '' when the server has no such model, and for the "
            "server's bound (decided before the request is read).",
            ["model", "reason"], registry=r,
        )  # fmt: skip
        self.explained_requests = Counter(
            f"{PREFIX}_explained_requests", "Requests that asked for explanations.", MODEL_LABELS,
            registry=r,
        )  # fmt: skip
        self.explain_seconds = _latency(
            r, "explain_duration", "Extra time explanations added to a request (maps, occlusion)."
        )
        self.grpc = GrpcMetrics(r)
        self._series: dict[tuple[str, int], ModelSeries] = {}
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    def observers(self) -> Observers:
        """The server's hooks (requests, explanations, batches, loads, refusals), all reporting
        here."""
        return Observers(self.track, self.explained, self.batch_observer, self, self.refused)

    def watch(self, repository: Repository) -> None:
        """Export readiness, load time and queue depth of every version, read at scrape time."""
        self.registry.register(RepositoryCollector(repository))

    # The repository's LoadObserver. Load time is exported from the version itself at scrape
    # time (RepositoryCollector), so it disappears with the version.
    def load_started(self, model: str, version: int) -> None:
        """Create the load series at zero, so `increase()` works from the first load."""
        self.load_failures.labels(model)
        self.loads.labels(model, str(version))

    def load_succeeded(self, model: str, version: int, seconds: float) -> None:
        self.loads.labels(model, str(version)).inc()

    def load_failed(self, model: str, version: int, reason: str) -> None:
        self.load_failures.labels(model).inc()

    def explained(self, model: str, version: int, seconds: float) -> None:
        """One explained request and the extra seconds explaining it took (`Pipeline.explained`)."""
        labels = (model, str(version))
        self.explained_requests.labels(*labels).inc()
        self.explain_seconds.labels(*labels).observe(seconds)

    def track(self, model: str, version: int) -> RequestTracker:
        series = self._series.get((model, version))
        if series is None:
            series = self._series[(model, version)] = ModelSeries(self, model, version)
        return RequestTracker(series)

    def batch_observer(self, model: str, version: int) -> BatchMetrics:
        """The batcher's observer for a version; also creates its series at zero, so dashboards
        show a freshly loaded model before its first request."""
        series = self._series[(model, version)] = ModelSeries(self, model, version)
        series.requests("OK")
        labels = (model, str(version))
        return BatchMetrics(
            self.batch_size.labels(*labels),
            self.queue_seconds.labels(*labels),
            self.compute_seconds.labels(*labels),
            self.batch_failures.labels(*labels),
        )

    def serve_http(self, port: int, host: str, tls: HttpsFiles | None = None) -> MetricsEndpoint:
        """Serve GET /metrics in a background thread (HTTPS with `tls`); 0 picks a free port.

        Raises OSError when the address is taken."""
        server, _thread = start_http_server(
            port,
            addr=_unbracketed(host),
            registry=self.registry,
            certfile=str(tls.cert) if tls else None,
            keyfile=str(tls.key) if tls else None,
            client_cafile=str(tls.client_ca) if tls and tls.client_ca else None,
            client_auth_required=bool(tls and tls.client_ca),
        )
        return MetricsEndpoint(server, int(server.server_port))


@dataclass(frozen=True)
class HttpsFiles:
    cert: Path
    key: Path
    # When set, scrapers must present a certificate this CA signed.
    client_ca: Path | None = None


@dataclass(frozen=True)
class MetricsEndpoint:
    """The running /metrics HTTP server."""

    server: WSGIServer
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _unbracketed(host: str) -> str:
    """gRPC writes IPv6 hosts in brackets ("[::]"); sockets want them bare ("::")."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _latency(registry: CollectorRegistry, name: str, documentation: str) -> Histogram:
    return Histogram(
        f"{PREFIX}_{name}_seconds", documentation, MODEL_LABELS, buckets=LATENCY_BUCKETS,
        registry=registry,
    )  # fmt: skip


@dataclass(frozen=True)
class BatchMetrics:
    """The batcher's `BatchObserver` for one model version."""

    batch_size: Histogram
    queue_seconds: Histogram
    compute_seconds: Histogram
    failures: Counter

    def batch_started(self, size: int, queue_waits_s: Sequence[float]) -> None:
        self.batch_size.observe(size)
        for wait in queue_waits_s:
            self.queue_seconds.observe(wait)

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None:
        self.compute_seconds.observe(compute_s)
        if not ok:
            self.failures.inc()


class RepositoryCollector(Collector):
    """Model state straight from the repository at scrape time, so it can never go stale."""

    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily(
            f"{PREFIX}_model_ready", "1 when the model version can serve.", labels=MODEL_LABELS
        )
        load = GaugeMetricFamily(
            f"{PREFIX}_model_load_duration_seconds", "How long loading and warm-up took.",
            labels=MODEL_LABELS,
        )  # fmt: skip
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Inputs waiting in the batch queue.", labels=MODEL_LABELS
        )
        # Alerts compare the depth with it ("queue near capacity") without knowing the config.
        capacity = GaugeMetricFamily(
            f"{PREFIX}_queue_capacity", "Inputs the batch queue holds before refusing more.",
            labels=MODEL_LABELS,
        )  # fmt: skip
        # Scrapes run on the HTTP server's thread while the event loop swaps versions in and
        # out: iterate over copies, never over the live dicts.
        for model in list(self._repository.models()):
            if not model.versions:  # e.g. its config.pbtxt does not parse: still on the board
                ready.add_metric([model.name, ""], 0.0)
            for version in list(model.versions.values()):
                labels = [model.name, str(version.version)]
                ready.add_metric(labels, 1.0 if version.ready else 0.0)
                load.add_metric(labels, version.load_seconds)
                queued = version.batcher.queued_rows if version.batcher is not None else 0
                depth.add_metric(labels, float(queued))
                if version.batcher is not None:
                    capacity.add_metric(labels, float(version.batcher.policy.max_queue_size))
        yield from (ready, load, depth, capacity)


class GrpcMetrics:
    """The conventional gRPC server metrics, named as go-grpc-prometheus names them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled", "RPCs completed on the server, by status code.",
            [*labels, "grpc_code"], registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "grpc_server_handling_seconds", "RPC handling time on the server.", labels,
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        # (kind, method) -> its started/seconds children, labels, and handled children by code.
        self._methods: dict[
            tuple[str, str], tuple[Counter, Histogram, tuple[str, str, str], dict[str, Counter]]
        ] = {}

    def record(self, kind: str, full_method: str) -> Callable[[str], None]:
        """Count a started RPC; returns the function that records its end with a code name."""
        key = (kind, full_method)
        series = self._methods.get(key)
        if series is None:
            service, _, method = full_method.lstrip("/").rpartition("/")
            labels = (kind, service, method)
            series = self._methods[key] = (
                self.started.labels(*labels), self.seconds.labels(*labels), labels, {}
            )  # fmt: skip
        started_total, seconds, labels, handled = series
        started_total.inc()
        started = time.perf_counter()

        def done(code: str) -> None:
            child = handled.get(code)
            if child is None:
                child = handled[code] = self.handled.labels(*labels, code)
            child.inc()
            seconds.observe(time.perf_counter() - started)

        return done


class ModelSeries:
    """The request series of one model version, resolved once: `.labels()` takes a lock and a
    dict lookup per call, which adds up at thousands of requests per second."""

    def __init__(self, metrics: ServerMetrics, model: str, version: int) -> None:
        labels = (model, str(version))
        self._labels = labels
        self._requests = metrics.requests
        self.inflight = metrics.inflight.labels(*labels)
        self.request_seconds = metrics.request_seconds.labels(*labels)
        self.preprocess_seconds = metrics.preprocess_seconds.labels(*labels)
        self.inputs = metrics.inputs.labels(*labels)
        self.refused_queue_full = metrics.refused.labels(model, "queue_full")
        self._by_code: dict[str, Counter] = {}

    def requests(self, code: str) -> Counter:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._requests.labels(*self._labels, code)
        return child


class RequestTracker:
    """Times one Classify request and records its outcome: `with metrics.track(m, v) as t:`."""

    def __init__(self, series: ModelSeries) -> None:
        self._series = series
        self._started = 0.0
        self.inputs = 0

    def __enter__(self) -> RequestTracker:
        self._started = time.perf_counter()
        self._series.inflight.inc()
        return self

    def preprocessed(self, seconds: float) -> None:
        self._series.preprocess_seconds.observe(seconds)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        series = self._series
        series.inflight.dec()
        series.requests(_code_name(exc)).inc()
        if isinstance(exc, Overloaded):  # the batch queue's bound; admission counts its own
            series.refused_queue_full.inc()
        series.request_seconds.observe(time.perf_counter() - self._started)
        if exc is None:
            series.inputs.inc(self.inputs)


def _code_name(error: BaseException | None) -> str:
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return code_name(error)
