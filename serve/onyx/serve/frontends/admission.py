"""Admission control: inference requests the server cannot take are refused at once, and counted.

Without it, a server past its capacity lets requests pile up in gRPC's and asyncio's queues until
their deadlines pass there (CANCELLED, never seen by Onyx's code), and every accepted request
waits behind them. Here each inference RPC (Classify, ModelInfer) passes a front door first:

* at most `max_inflight` requests are handled at once by the server, and at most
  `max_inflight_per_model` by one model; beyond them a request is answered RESOURCE_EXHAUSTED
  straight away (the client may retry, elsewhere or later);
* a request whose deadline is too close for the work already admitted ahead of it (the model's
  requests in flight times its recent busy seconds per request) is refused the same way, at once,
  instead of waiting to expire in the batch queue.

Every refusal is counted by reason (`onyx_requests_refused_total{model,reason}`); a model name no
configured model has is counted as "" so clients cannot grow the label set.

    admission = Admission(AdmissionPolicy(max_inflight=256), known=lambda name: name in models)
    with admission.admit("pets", time_remaining_s=0.5):   # raises Refused
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc

from onyx.contract.errors import InvalidInput, Refused, ServeError
from onyx.serve.frontends.parse_errors import Undecodable
from onyx.serve.frontends.rpc import abort, status_code
from onyx.serve.frontends.wrapping import WrappingInterceptor
from onyx.serve.observers import NO_OBSERVERS, RefusalCounter

# Weight of the newest sample in a model's busy-seconds-per-request average: about the last 16
# completions count, so one slow batch does not close the door and a burst is seen quickly.
_SMOOTHING = 1 / 16
# The inference RPCs the door guards, and the request field that names their model. Streams
# are bounded by their window (--stream-window); health, metadata and reflection always pass.
INFERENCE_METHODS = {
    "/onyx.v1.Classifier/Classify": "model",
    "/inference.GRPCInferenceService/ModelInfer": "model_name",
}


@dataclass(frozen=True)
class AdmissionPolicy:
    # Inference requests handled at once by the server (0: no bound).
    max_inflight: int = 256
    # ... and by one model (0: only the server's bound).
    max_inflight_per_model: int = 0


@dataclass
class _ModelLoad:
    """Requests of one model in flight, and the model's recent busy seconds per request."""

    inflight: int = 0
    # Since when the model has been busy without a completion being counted.
    mark: float = 0.0
    seconds_per_request: float | None = None

    def started(self, now: float) -> None:
        if self.inflight == 0:
            self.mark = now
        self.inflight += 1

    def finished(self, now: float) -> None:
        # Only busy time counts: at a low rate the model idles between requests, and the rate
        # of arrivals must not pass for its capacity.
        busy, self.mark = now - self.mark, now
        self.inflight -= 1
        previous = self.seconds_per_request
        self.seconds_per_request = (
            busy if previous is None else previous + _SMOOTHING * (busy - previous)
        )

    def expected_wait_s(self) -> float:
        return self.inflight * (self.seconds_per_request or 0.0)


@dataclass
class Admission:
    policy: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    # Whether a model name is one the server has (its label; others are counted as "").
    known: Callable[[str], bool] = lambda _name: True
    # Counts every refusal (metrics); a no-op by default.
    refused: RefusalCounter = NO_OBSERVERS.refused
    inflight: int = 0
    # When the last inference call reached the application (time.monotonic()): see `quiet`.
    last_arrival: float = 0.0
    _models: dict[str, _ModelLoad] = field(default_factory=dict)

    @contextlib.contextmanager
    def admit(self, model: str, time_remaining_s: float | None = None) -> Iterator[None]:
        """Hold a place for one request of `model` while the block runs; raises `Refused` when
        it cannot be taken."""
        load = self.enter(model, time_remaining_s)
        try:
            yield
        finally:
            self.leave(load)

    def enter(self, model: str, time_remaining_s: float | None) -> _ModelLoad:
        """Take a place (or raise, as `admit`); give it back with `leave`."""
        label = model if self.known(model) else ""
        load = self._models.get(label)
        if load is None:
            load = self._models[label] = _ModelLoad()
        self._check(label, load, time_remaining_s)
        self.inflight += 1
        load.started(time.monotonic())
        return load

    def leave(self, load: _ModelLoad) -> None:
        self.inflight -= 1
        load.finished(time.monotonic())

    def check_server_bound(self) -> None:
        """Raise `Refused` if the server is at its bound: known before the request is read, so
        the refusal is counted with model ""."""
        self._check_server_bound("")

    def _check_server_bound(self, label: str) -> None:
        bound = self.policy.max_inflight
        if bound and self.inflight >= bound:
            why = f"server busy: {bound} requests in flight (--max-inflight-requests)"
            self._refuse(label, "inflight", f"{why}; retry later")

    def _check(self, label: str, load: _ModelLoad, remaining: float | None) -> None:
        self._check_server_bound(label)
        per_model = self.policy.max_inflight_per_model
        if per_model and load.inflight >= per_model:
            why = f"model busy: {per_model} requests in flight (--max-inflight-per-model)"
            self._refuse(label, "model_inflight", f"{why}; retry later")
        wait = load.expected_wait_s()
        if remaining is not None and remaining <= wait:
            why = f"about {wait:.3f}s of work ahead, {max(remaining, 0):.3f}s left"
            self._refuse(label, "deadline", f"cannot start before the deadline: {why}")

    def _refuse(self, label: str, reason: str, message: str) -> None:
        self._count(label, reason)
        raise Refused(message, reason)

    def _count(self, label: str, reason: str) -> None:
        self.refused.labels(label, reason).inc()

    async def quiet(self, quiet_s: float, timeout_s: float) -> None:
        """Wait until no RPC has arrived for `quiet_s` (at most `timeout_s`).

        gRPC cancels the calls it has received but not yet handed to the application when the
        server stops; the application takes them one by one as the event loop allows. Once no
        call has come for a while, none is left waiting there."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while (left := self.last_arrival + quiet_s - time.monotonic()) > 0:
            if loop.time() >= give_up:
                return
            await asyncio.sleep(min(left, max(give_up - loop.time(), 0.0)))


class AdmissionInterceptor(WrappingInterceptor):
    """Puts the inference RPCs behind `admission`; a refusal is answered with its status code.

    The server's bound is checked before the request is even parsed, so a refusal costs as
    little as gRPC allows; the model's bound and the deadline once its name is read."""

    def __init__(self, admission: Admission) -> None:
        super().__init__()
        self._admission = admission

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        # Once per method: per-call work is in `guarded`.
        field_name = INFERENCE_METHODS.get(method)
        if field_name is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._guard(handler, field_name),
            None,  # raw bytes: `guarded` parses them once admitted
            handler.response_serializer,
        )

    def _guard(self, handler: grpc.RpcMethodHandler, field_name: str) -> Any:
        admission = self._admission
        behaviour, parse = handler.unary_unary, handler.request_deserializer

        async def guarded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            admission.last_arrival = time.monotonic()
            try:
                admission.check_server_bound()
                request = parse(raw) if parse is not None else raw
            except ServeError as exc:
                await _abort(context, exc)
            except Exception as exc:  # the message does not parse: the client's fault
                await _abort(context, InvalidInput(f"the request cannot be parsed: {exc}"))
            if isinstance(request, Undecodable):  # DecodeErrors (inside) named the bad field
                await _abort(context, InvalidInput(request.message))
            try:
                load = admission.enter(getattr(request, field_name), context.time_remaining())
            except ServeError as exc:
                await _abort(context, exc)
            try:
                return await behaviour(request, context)
            finally:
                admission.leave(load)

        return guarded


async def _abort(context: grpc.aio.ServicerContext, error: ServeError) -> NoReturn:
    await abort(context, status_code(error), str(error))
