"""The hooks the server reports through (metrics), in one bundle whose defaults do nothing.

The pipeline, the version loader, the repository and admission call their hooks without asking
whether anyone listens: a server run with `--no-metrics` gets `NO_OBSERVERS`, so a request pays
a few empty calls and no branches, and no metrics registry exists.

    observers = metrics.observers() if metrics is not None else NO_OBSERVERS
    pipeline = Pipeline(repository, preprocess, observers)
    with observers.track("pets", 1) as tracker:       # times one request
        tracker.inputs = 4
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from onyx.serve.batching import BatchObserver

# The no-op hooks take the arguments their protocols pass.
# ruff: noqa: ARG001, ARG002


class RequestTracker(Protocol):
    """Follows one request once its model version is known: `inputs` and `preprocessed` are
    filled in; entering and leaving its context time the request."""

    inputs: int

    def preprocessed(self, seconds: float) -> None: ...


class LoadObserver(Protocol):
    """Told about every version load: keeps the repository free of Prometheus."""

    def load_started(self, model: str, version: int) -> None: ...

    def load_succeeded(self, model: str, version: int, seconds: float) -> None: ...

    def load_failed(self, model: str, version: int, reason: str) -> None: ...


class RefusalCounter(Protocol):
    """Counts admission's refusals (the metrics' `refused` counter is one)."""

    def labels(self, model: str, reason: str) -> Any: ...


# (model name, version) -> a context manager yielding the request's RequestTracker.
Track = Callable[[str, int], AbstractContextManager[RequestTracker]]
# (model name, version, seconds spent explaining) -> None: every explained request.
Explained = Callable[[str, int, float], None]
# (model name, version) -> the batch observer of that version, None when nobody observes.
ObserverFactory = Callable[[str, int], BatchObserver | None]


class _Untracked:
    """Tracks nothing; one instance serves every request (what it is told is thrown away)."""

    inputs = 0

    def __enter__(self) -> _Untracked:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def preprocessed(self, seconds: float) -> None:
        pass


_UNTRACKED = _Untracked()


def _untracked(model: str, version: int) -> _Untracked:
    return _UNTRACKED


def _unexplained(model: str, version: int, seconds: float) -> None:
    pass


def _unobserved(model: str, version: int) -> None:
    return None  # the batcher then reports to the statistics alone


class _NoLoads:
    def load_started(self, model: str, version: int) -> None:
        pass

    def load_succeeded(self, model: str, version: int, seconds: float) -> None:
        pass

    def load_failed(self, model: str, version: int, reason: str) -> None:
        pass


class _NoRefusals:
    def labels(self, model: str, reason: str) -> _NoRefusals:
        return self

    def inc(self) -> None:
        pass


_NO_LOADS, _NO_REFUSALS = _NoLoads(), _NoRefusals()


@dataclass(frozen=True)
class Observers:
    # Times each request (metrics: latency, in-flight, outcome, inputs).
    track: Track = _untracked
    # Told about each explained request and the extra seconds explaining took.
    explained: Explained = _unexplained
    # Makes each loaded version's batch observer (metrics: batch sizes, queue, compute).
    batches: ObserverFactory = _unobserved
    # Told about each version load.
    loads: LoadObserver = _NO_LOADS
    # Counts requests admission refused, by model and reason.
    refused: RefusalCounter = _NO_REFUSALS


NO_OBSERVERS = Observers()
