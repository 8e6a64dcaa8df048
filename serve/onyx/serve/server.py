"""The gRPC server: `create_server` builds and starts it, `serve` runs it until SIGTERM/SIGINT.

    onyx serve --repository models --port 50051
    onyx serve --poll-interval-s 5                    # follow new / removed / edited versions
    onyx serve --model-control explicit --startup-models pets

Besides `onyx.v1.Classifier` it serves KServe v2's `inference.GRPCInferenceService`, the standard
`grpc.health.v1.Health` (overall, per service, and one service name per model, kept in step with
reloads) and server reflection, so `grpcurl`, Triton clients and health probes work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.config import ServerConfig, TlsConfig
from onyx.serve.interceptor import MetricsInterceptor
from onyx.serve.kserve import SERVICE_NAME as KSERVE_SERVICE
from onyx.serve.kserve import KServeServicer
from onyx.serve.metrics import ServerMetrics
from onyx.serve.pipeline import Pipeline
from onyx.serve.repository import Repository, RepositoryOptions
from onyx.serve.runtime import RuntimeOptions
from onyx.serve.servicer import ClassifierServicer
from onyx.serve.version import ObserverFactory

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
    kserve: KServeServicer
    watcher: asyncio.Task[None] | None = None
    metrics: ServerMetrics | None = None
    # Where GET /metrics is served, when it is.
    metrics_port: int | None = None
    # Model names health has been published for (a removed model turns NOT_SERVING).
    published: set[str] = field(default_factory=set)

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within `grace_s`, then unload models."""
        self.kserve.serving = False
        await self.health.enter_graceful_shutdown()
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        await self.server.stop(grace_s)
        await self.repository.close()
        self.preprocess.shutdown(wait=False)


def repository_options(
    config: ServerConfig, metrics: ServerMetrics | None = None
) -> RepositoryOptions:
    return RepositoryOptions(
        runtime=RuntimeOptions(device=config.device, intra_op_threads=config.intra_op_threads),
        default_max_queue_size=config.default_max_queue_size,
        instances=config.instances,
        model_control=config.model_control,
        startup_models=config.startup_models,
        loads=metrics,
    )


async def create_server(
    config: ServerConfig,
    metrics: ServerMetrics | None = None,
    observers: ObserverFactory | None = None,
) -> RunningServer:
    """Load the repository and start serving it; `config.port` 0 picks a free port.

    Metrics go to `metrics` (tests pass a fresh registry), or to a new `ServerMetrics` unless
    `config.metrics` is off. `observers` makes one BatchObserver per model version (default:
    the metrics' batch observer).
    """
    if metrics is None and config.metrics:
        metrics = ServerMetrics()
    if observers is None and metrics is not None:
        observers = metrics.batch_observer
    options = repository_options(config, metrics)
    repository = Repository(config.repository, options, observers)
    await repository.load_all()
    preprocess = ThreadPoolExecutor(
        max_workers=config.preprocess_threads or os.cpu_count() or 1,
        thread_name_prefix="preprocess",
    )
    pipeline = Pipeline(
        repository,
        preprocess,
        metrics.track if metrics is not None else None,
        metrics.explained if metrics is not None else None,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
        interceptors=[MetricsInterceptor(metrics.grpc)] if metrics is not None else [],
    )
    kserve, health_servicer = _add_services(server, pipeline, config)
    port = _listen(server, f"{config.host}:{config.port}", config.tls)
    await server.start()
    running = RunningServer(server, port, repository, health_servicer, preprocess, kserve)
    running.metrics = metrics
    if metrics is not None:
        metrics.watch(repository)
        if config.metrics_port is not None:
            running.metrics_port = metrics.serve_http(config.metrics_port)
    await publish_health(running)
    repository.on_change = lambda: publish_health(running)
    if config.model_control == "poll":
        running.watcher = asyncio.ensure_future(watch(repository, config.poll_interval_s))
    return running


def _add_services(
    server: grpc.aio.Server, pipeline: Pipeline, config: ServerConfig
) -> tuple[KServeServicer, health.aio.HealthServicer]:
    """onyx.v1 and KServe v2 over one pipeline, plus health and reflection, on one port."""
    api_grpc.add_ClassifierServicer_to_server(
        ClassifierServicer(pipeline, config.limits, config.stream_window), server
    )
    kserve = KServeServicer(pipeline, config.limits, config.model_control, config.stream_window)
    kv2_grpc.add_GRPCInferenceServiceServicer_to_server(kserve, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [CLASSIFIER_SERVICE, KSERVE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return kserve, health_servicer


def _listen(server: grpc.aio.Server, address: str, tls: TlsConfig | None) -> int:
    if tls is None:
        port: int = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, server_credentials(tls))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    client_ca = tls.client_ca.read_bytes() if tls.client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def watch(repository: Repository, interval_s: float) -> None:
    """Re-read the repository every `interval_s`; a failing poll is logged, never fatal."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await repository.poll()
        except Exception:
            log.exception("polling the model repository failed; trying again next time")


async def publish_health(running: RunningServer) -> None:
    """Overall SERVING, the two APIs, and one entry per model by its name."""
    await running.health.set("", SERVING)
    await running.health.set(CLASSIFIER_SERVICE, SERVING)
    await running.health.set(KSERVE_SERVICE, SERVING)
    models = running.repository.models()
    for model in models:
        await running.health.set(model.name, SERVING if model.ready else NOT_SERVING)
    for gone in running.published - {m.name for m in models}:
        await running.health.set(gone, NOT_SERVING)
    running.published |= {m.name for m in models}


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight requests within `config.grace_s`."""
    running = await create_server(config)
    models = running.repository.models()
    ready = [m.name for m in models if m.ready]
    if running.metrics_port is not None:
        log.info("metrics on http://%s:%d/metrics", config.host, running.metrics_port)
    log.info(
        "serving %d/%d models from %s on %s:%d (ready: %s; model control %s)",
        len(ready),
        len(models),
        config.repository,
        config.host,
        running.port,
        ", ".join(ready) or "none",
        config.model_control,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight requests (grace %.1fs)", config.grace_s)
    await running.stop(config.grace_s)
    log.info("stopped")
