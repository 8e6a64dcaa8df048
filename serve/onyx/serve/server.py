"""The gRPC server: `create_server` builds and starts it, `serve` runs it until SIGTERM/SIGINT.

    onyx serve --repository models --port 50051
    onyx serve --poll-interval-s 5                    # follow new / removed / edited versions
    onyx serve --model-control explicit --startup-models pets

Besides `onyx.v1.Classifier` it serves KServe v2's `inference.GRPCInferenceService`, the standard
`grpc.health.v1.Health` (overall, per service, and one service name per model, kept in step with
reloads) and server reflection (v1 and v1alpha), so `grpcurl`, Triton clients and health probes
work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from onyx.contract.errors import ModelNotFound
from onyx.proto.kserve import grpc_service_pb2_grpc as kv2_grpc
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.batching import BatchObserver
from onyx.serve.config import ServerConfig, TlsConfig
from onyx.serve.dataplane import DataPlane
from onyx.serve.execution.runtime import RuntimeOptions, share_of_cores
from onyx.serve.frontends.admission import Admission, AdmissionInterceptor, AdmissionPolicy
from onyx.serve.frontends.health import HealthServicer, publish_health
from onyx.serve.frontends.interceptor import MetricsInterceptor
from onyx.serve.frontends.kserve import SERVICE_NAME as KSERVE_SERVICE
from onyx.serve.frontends.kserve import KServeServicer
from onyx.serve.frontends.onyx_v1 import ClassifierServicer
from onyx.serve.frontends.parse_errors import DecodeErrors
from onyx.serve.frontends.reflection import enable_reflection
from onyx.serve.frontends.rest import RestServer
from onyx.serve.metrics import HttpsFiles, MetricsEndpoint, ServerMetrics
from onyx.serve.observers import NO_OBSERVERS, ObserverFactory, Observers
from onyx.serve.pipeline import Pipeline
from onyx.serve.repository import Repository, RepositoryOptions
from onyx.serve.statistics import Statistics

log = logging.getLogger(__name__)

CLASSIFIER_SERVICE = api.DESCRIPTOR.services_by_name["Classifier"].full_name
# Before stopping, wait until no call has arrived for this long: gRPC cancels the calls it has
# received but not yet handed to the application (see `Admission.quiet`).
QUIET_S = 0.25
# Health entries besides the overall one (""); each says whether the server is ready.
SERVICES = (CLASSIFIER_SERVICE, KSERVE_SERVICE)


class ListenError(OSError):
    """A port the server was told to listen on cannot be had (busy, or a bad address)."""


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    repository: Repository
    health: HealthServicer
    preprocess: ThreadPoolExecutor
    # KServe v2's data plane, behind its gRPC and REST bindings (readiness flags included).
    dataplane: DataPlane
    admission: Admission
    lenient_readiness: bool = False
    watcher: asyncio.Task[None] | None = None
    # None with --no-metrics: no registry at all.
    metrics: ServerMetrics | None = None
    # GET /metrics, when it is served.
    metrics_endpoint: MetricsEndpoint | None = None
    # The KServe v2 REST binding and its port, when `--http-port` is set.
    rest: RestServer | None = None
    http_port: int | None = None
    # Model names health has been published for (a removed model turns NOT_SERVING).
    published: set[str] = field(default_factory=set)

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_endpoint.port if self.metrics_endpoint is not None else None

    async def publish_health(self) -> None:
        """Readiness from the repository, to health and KServe's ServerReady."""
        self.dataplane.models_ready = await publish_health(
            self.health, self.repository, SERVICES, self.lenient_readiness, self.published
        )

    async def drain(self, delay_s: float, grace_s: float) -> None:
        """Kubernetes' way (SIGTERM): NOT_SERVING at once and every health Watch ended, requests
        still accepted for `delay_s` (load balancers take that long to notice), then no new
        ones, and those received get `grace_s` to finish."""
        self.dataplane.serving = False
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(delay_s)
        started = time.monotonic()
        await self.admission.quiet(QUIET_S, grace_s)
        await self.stop(max(grace_s - (time.monotonic() - started), 0.0))

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within `grace_s`, then unload models."""
        self.dataplane.serving = False
        await self.health.enter_graceful_shutdown()
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        rest_stopped = self.rest.stop() if self.rest is not None else asyncio.sleep(0)
        await asyncio.gather(self.server.stop(grace_s), rest_stopped)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        await self.repository.close()
        self.preprocess.shutdown(wait=False)


def repository_options(config: ServerConfig) -> RepositoryOptions:
    return RepositoryOptions(
        runtime=RuntimeOptions(
            device=config.device,
            intra_op_threads=config.intra_op_threads,
            cores=share_of_cores(config.workers),
            io_binding=config.io_binding,
        ),
        default_max_queue_size=config.default_max_queue_size,
        instances=config.instances,
        model_control=config.model_control,
        startup_models=config.startup_models,
    )


async def create_server(
    config: ServerConfig,
    metrics: ServerMetrics | None = None,
    batch_observers: ObserverFactory | None = None,
) -> RunningServer:
    """Take the ports, load the repository and start serving it; `config.port` 0 picks a free
    port. A port that cannot be had raises `ListenError` before any model loads.

    Metrics go to `metrics` (tests pass a fresh registry), or to a new `ServerMetrics` unless
    `config.metrics` is off. `batch_observers` makes one BatchObserver per model version (default:
    the metrics' batch observer).
    """
    if metrics is None and config.metrics:
        metrics = ServerMetrics()
    statistics = Statistics()
    hooks = server_observers(metrics, statistics, batch_observers)
    repository = Repository(config.repository, repository_options(config), hooks)
    preprocess = ThreadPoolExecutor(
        max_workers=config.preprocess_threads or share_of_cores(config.workers),
        thread_name_prefix="preprocess",
    )
    admission = Admission(
        AdmissionPolicy(config.max_inflight_requests, config.max_inflight_per_model),
        known=lambda name: _has_model(repository, name),
        refused=hooks.refused,
    )
    server = grpc_server(config, admission, metrics)
    pipeline = Pipeline(repository, preprocess, hooks, statistics)
    dataplane = DataPlane(pipeline, config.limits, config.model_control)
    health_servicer = _add_services(server, pipeline, dataplane, config)
    running = RunningServer(
        server, 0, repository, health_servicer, preprocess, dataplane, admission,
        config.lenient_readiness, metrics=metrics,
    )  # fmt: skip
    try:
        await _take_ports(running, config)
        await repository.load_all()
    except BaseException:
        await running.stop(None)  # nothing left for asyncio.run to find half-closed
        raise
    await server.start()
    if metrics is not None:
        metrics.watch(repository)
    await running.publish_health()
    repository.on_change = running.publish_health
    if config.model_control == "poll":
        running.watcher = asyncio.ensure_future(watch(repository, config.poll_interval_s))
    return running


async def _take_ports(running: RunningServer, config: ServerConfig) -> None:
    """Listen on the gRPC port, then /metrics' and REST's when they are served."""
    running.port = _listen(running.server, config.host, config.port, config.tls, config.reuse_port)
    if running.metrics is not None and config.metrics_port is not None:
        running.metrics_endpoint = _serve_metrics(running.metrics, config)
    if config.http_port is not None:
        running.rest = await RestServer.start(
            running.dataplane, config.host, config.http_port, config.max_message_bytes,
            config.tls, config.grace_s, running.admission, config.reuse_port,
        )  # fmt: skip
        running.http_port = running.rest.port


def server_observers(
    metrics: ServerMetrics | None, statistics: Statistics, batches: ObserverFactory | None = None
) -> Observers:
    """The hooks the server reports through: the metrics' (no-ops without metrics), with
    `batches` instead of the metrics' batch observers when given; every version's batches are
    counted in `statistics` too (ModelStatistics answers from them)."""
    hooks = metrics.observers() if metrics is not None else NO_OBSERVERS
    own = batches if batches is not None else hooks.batches
    return dataclasses.replace(hooks, batches=_with_statistics(statistics, own))


def grpc_server(
    config: ServerConfig, admission: Admission, metrics: ServerMetrics | None
) -> grpc.aio.Server:
    """The gRPC server: metrics outermost (so refusals are counted too), then admission."""
    interceptors: list[grpc.aio.ServerInterceptor] = [
        AdmissionInterceptor(admission),
        DecodeErrors(),  # unparsable requests: INVALID_ARGUMENT naming the field
    ]
    if metrics is not None:
        interceptors.insert(0, MetricsInterceptor(metrics.grpc))
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            # gRPC's default (on) lets a second server take a busy port and split the traffic.
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            *connection_age_options(config),
        ],
        interceptors=interceptors,
    )


def _has_model(repository: Repository, name: str) -> bool:
    try:
        repository.get(name)
    except ModelNotFound:
        return False
    return True


def _serve_metrics(metrics: ServerMetrics, config: ServerConfig) -> MetricsEndpoint:
    """GET /metrics on --metrics-host (else --host), over the gRPC certificate when TLS is on."""
    assert config.metrics_port is not None
    host = config.metrics_host if config.metrics_host is not None else config.host
    tls = config.tls if config.metrics_tls else None
    files = HttpsFiles(tls.cert, tls.key, tls.client_ca) if tls is not None else None
    try:
        return metrics.serve_http(config.metrics_port, host, files)
    except OSError as exc:
        raise ListenError(
            f"cannot serve metrics on {host}:{config.metrics_port}: {exc.strerror or exc}"
        ) from exc


def _with_statistics(statistics: Statistics, observers: ObserverFactory) -> ObserverFactory:
    """Each version's batch observer: the statistics' own, plus `observers`' one if any."""

    def observer(model: str, version: int) -> BatchObserver:
        return statistics.observing(model, version, observers(model, version))

    return observer


def connection_age_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC core's max-connection-age options; none when the age is 0 (connections live on)."""
    if config.max_connection_age_s <= 0:
        return []
    return [
        ("grpc.max_connection_age_ms", round(config.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", round(config.max_connection_age_grace_s * 1000)),
    ]


def _add_services(
    server: grpc.aio.Server, pipeline: Pipeline, dataplane: DataPlane, config: ServerConfig
) -> HealthServicer:
    """onyx.v1 and KServe v2 over one pipeline, plus health and reflection, on one port."""
    api_grpc.add_ClassifierServicer_to_server(
        ClassifierServicer(pipeline, config.limits, config.stream_window), server
    )
    kserve = KServeServicer(dataplane, config.stream_window)
    kv2_grpc.add_GRPCInferenceServiceServicer_to_server(kserve, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection([CLASSIFIER_SERVICE, KSERVE_SERVICE, health.SERVICE_NAME], server)
    return health_servicer


def _listen(
    server: grpc.aio.Server, host: str, port: int, tls: TlsConfig | None, reuse_port: bool
) -> int:
    address = f"{host}:{port}"
    if port and not reuse_port:
        _check_free(host, port)  # before gRPC, which logs its own multi-line complaint
    bound, cause = 0, None
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, server_credentials(tls))
    except RuntimeError as exc:  # gRPC's "failed to bind"
        cause = exc
    if bound == 0:
        raise ListenError(
            f"cannot listen on {address}: address in use or not available "
            "(--reuse-port lets several servers share a port)"
        ) from cause
    return bound


def _check_free(host: str, port: int) -> None:
    """Raise ListenError if `host:port` cannot be bound now (another server has it)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        found = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return  # gRPC resolves it its own way and says so
    for family, kind, proto, _name, address in found:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC does: a port held only by connections closing (TIME_WAIT) is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ListenError(
                    f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server? "
                    "--reuse-port lets several servers share a port)"
                ) from exc


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


async def serve(
    config: ServerConfig,
    on_ready: Callable[[RunningServer], None] | None = None,
    metrics: ServerMetrics | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight requests within `config.grace_s`;
    `on_ready` is told once the server serves (a worker tells its parent, `workers`), and
    `metrics` (default: a new registry) records."""
    running = await create_server(config, metrics)
    if on_ready is not None:
        on_ready(running)
    models = running.repository.models()
    ready = [m.name for m in models if m.ready]
    if running.metrics_port is not None:
        scheme = "https" if config.tls is not None and config.metrics_tls else "http"
        host = config.metrics_host if config.metrics_host is not None else config.host
        log.info("metrics on %s://%s:%d/metrics", scheme, host, running.metrics_port)
    if running.http_port is not None:
        log.info("KServe v2 REST on %s:%d", config.host, running.http_port)
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
    log.info(
        "draining: health NOT_SERVING; %d inference requests in flight; accepting for %.1fs "
        "more, then finishing those received within %.1fs",
        running.admission.inflight,
        config.drain_delay_s,
        config.grace_s,
    )
    await running.drain(config.drain_delay_s, config.grace_s)
    log.info("stopped")
