"""The gRPC server: `create_server` builds and starts it, `serve` runs it until SIGTERM/SIGINT.

    onyx serve --repository models --port 50051

Besides `onyx.v1.Classifier` it serves the standard `grpc.health.v1.Health` (overall and one
service name per model) and server reflection, so `grpcurl` and health probes work unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.config import ServerConfig
from onyx.serve.interceptor import MetricsInterceptor
from onyx.serve.metrics import ServerMetrics
from onyx.serve.repository import Repository, RepositoryOptions
from onyx.serve.runtime import RuntimeOptions
from onyx.serve.servicer import ClassifierServicer

log = logging.getLogger(__name__)

CLASSIFIER_SERVICE = api.DESCRIPTOR.services_by_name["Classifier"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    repository: Repository
    health: health.aio.HealthServicer
    preprocess: ThreadPoolExecutor
    metrics: ServerMetrics | None = None
    # Where GET /metrics is served, when it is.
    metrics_port: int | None = None

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within `grace_s`, then unload models."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.repository.close()
        self.preprocess.shutdown(wait=False)


async def create_server(
    config: ServerConfig, metrics: ServerMetrics | None = None
) -> RunningServer:
    """Load the repository and start serving it; `config.port` 0 picks a free port.

    Pass `metrics` to record into a registry of your own (tests use a fresh one each).
    """
    if metrics is None and config.metrics:
        metrics = ServerMetrics()
    repository = Repository(
        config.repository,
        RepositoryOptions(
            runtime=RuntimeOptions(device=config.device, intra_op_threads=config.intra_op_threads),
            default_max_queue_size=config.default_max_queue_size,
            metrics=metrics,
        ),
    )
    await repository.load_all()
    preprocess = ThreadPoolExecutor(
        max_workers=config.preprocess_threads or os.cpu_count() or 1,
        thread_name_prefix="preprocess",
    )
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
    ]
    interceptors = [MetricsInterceptor(metrics.grpc)] if metrics is not None else []
    server = grpc.aio.server(options=options, interceptors=interceptors)
    api_grpc.add_ClassifierServicer_to_server(
        ClassifierServicer(repository, config.limits, preprocess, metrics), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [CLASSIFIER_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"cannot listen on {config.host}:{config.port}")
    await server.start()
    running = RunningServer(server, port, repository, health_servicer, preprocess, metrics)
    if metrics is not None:
        metrics.watch(repository)
        if config.metrics_port is not None:
            running.metrics_port = metrics.serve_http(config.metrics_port)
    await publish_health(running)
    return running


async def publish_health(running: RunningServer) -> None:
    """Overall SERVING, the Classifier service, and one entry per model by its name."""
    await running.health.set("", SERVING)
    await running.health.set(CLASSIFIER_SERVICE, SERVING)
    for model in running.repository.models():
        await running.health.set(model.name, SERVING if model.ready else NOT_SERVING)


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight requests within `config.grace_s`."""
    running = await create_server(config)
    models = running.repository.models()
    ready = [m.name for m in models if m.ready]
    if running.metrics_port is not None:
        log.info("metrics on http://%s:%d/metrics", config.host, running.metrics_port)
    log.info(
        "serving %d/%d models from %s on %s:%d (ready: %s)",
        len(ready),
        len(models),
        config.repository,
        config.host,
        running.port,
        ", ".join(ready) or "none",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight requests (grace %.1fs)", config.grace_s)
    await running.stop(config.grace_s)
    log.info("stopped")
