"""What the server says about its health: readiness from the repository, and a drain that ends
every health Watch stream at once.

Liveness and readiness are separate: the process is live while it answers at all (KServe
ServerLive); it is ready (overall health "" SERVING, the two APIs SERVING, KServe ServerReady)
only when every model it is configured to load has a ready version -- Triton's strict readiness,
so a probe never routes traffic to a replica missing a model. An empty or missing repository is
not ready. `lenient` readiness (`--lenient-readiness`) is ready once started, whatever the models.
Each model also has its own health entry, by its name.

On SIGTERM `enter_graceful_shutdown` turns everything NOT_SERVING for good and ends every Watch
stream after telling it so: an open stream must not hold the shutdown for the whole grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health, health_pb2

from onyx.serve.repository import UNLOADED, Model, Repository

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# SERVING while the process answers, whatever its models: what liveness and startup probes ask
# (the overall entry "" is readiness), so a bad model never gets a pod restarted.
LIVENESS_SERVICE = "liveness"


def configured(model: Model) -> bool:
    """Whether readiness waits for `model`: every model the repository holds, except those
    unloaded on request (explicit model control)."""
    return not (model.reason == UNLOADED and not model.versions)


def models_ready(models: Sequence[Model], lenient: bool) -> bool:
    """Strict: at least one model is configured and every configured one has a ready version."""
    if lenient:
        return True
    wanted = [m for m in models if configured(m)]
    return bool(wanted) and all(m.ready for m in wanted)


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 whose Watch streams end as soon as the server starts shutting down."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Condition()
        self.stopping = False

    async def set(self, service: str, status: Any) -> None:
        await super().set(service, status)
        async with self._changed:
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        self.stopping = True
        async with self._changed:
            self._changed.notify_all()

    def status(self, service: str) -> Any:
        return self._server_status.get(service, SERVICE_UNKNOWN)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """Send the service's status now and on every change; end after the shutdown's."""
        last = None
        while True:
            # Read before the status: once stopping, the status read next is the last one.
            stopping = self.stopping
            status = self.status(request.service)
            if status != last:  # written outside the lock: a slow client holds up nobody
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if stopping:
                return
            async with self._changed:
                if self.status(request.service) == last and not self.stopping:
                    await self._changed.wait()


async def publish_health(
    servicer: HealthServicer,
    repository: Repository,
    services: Sequence[str],
    lenient: bool,
    published: set[str],
) -> bool:
    """Overall ("") and `services` SERVING when ready, and one entry per model by its name;
    `published` (updated) holds the models published before, so a removed one turns NOT_SERVING.
    Returns whether the server is ready."""
    models = repository.models()
    ready = models_ready(models, lenient)
    await servicer.set(LIVENESS_SERVICE, SERVING)
    for service in ("", *services):
        await servicer.set(service, SERVING if ready else NOT_SERVING)
    for model in models:
        await servicer.set(model.name, SERVING if model.ready else NOT_SERVING)
    for gone in published - {m.name for m in models}:
        await servicer.set(gone, NOT_SERVING)
    published |= {m.name for m in models}
    return ready
