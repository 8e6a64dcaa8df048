"""CPU cost of recording one request's metrics, in isolation (deterministic, unlike A/B load runs).

    python bench/metrics_overhead.py

Times everything the server records for one single-input Classify request -- the gRPC
interceptor's counters and histogram, the request tracker, and the batch observer for a batch
of one -- and prints microseconds per request. Divide by the server's CPU time per request (from
`onyx bench`: 2 cores / requests per second at saturation) for the share metrics cost.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from onyx.serve.metrics import ServerMetrics

METHOD = "/onyx.v1.Classifier/Classify"


def one_request(metrics: ServerMetrics) -> None:
    done = metrics.grpc.record("unary", METHOD)
    with metrics.track("model", 1) as tracker:
        tracker.preprocessed(0.0004)
        tracker.inputs = 1
    done("OK")


def main(rounds: int = 100_000) -> None:
    metrics = ServerMetrics(CollectorRegistry(), process=False)
    observer = metrics.batch_observer("model", 1)
    started = time.perf_counter()
    for _ in range(rounds):
        one_request(metrics)
        observer.batch_started(1, [0.0002])
        observer.batch_finished(1, 0.003, True)
    per_request_us = (time.perf_counter() - started) / rounds * 1e6
    print(f"metrics recorded per single-input request: {per_request_us:.1f} us of CPU")


if __name__ == "__main__":
    main()
