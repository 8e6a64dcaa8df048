"""`onyx serve --workers N`: N server processes on one port, started, watched and drained together.

One Python process answers RPCs on one core's worth of event loop (gRPC's polling, protobuf, the
batcher): on a host with many cores it saturates long before ONNX Runtime does. With `--workers N`
the `onyx serve` process loads no model itself; it

* resolves the gRPC (and REST) port, 0 meaning a free one, and holds it bound with SO_REUSEPORT
  but not listening: no other program takes it between worker restarts, and no connection is
  ever queued on the parent;
* starts N workers, fresh interpreters (spawned, not forked: no gRPC or ONNX Runtime threads are
  inherited), each running `server.serve` on that port with SO_REUSEPORT, so the kernel spreads
  new connections over them. Each has its own sessions, batchers and preprocessing pool, and
  1/N of the cores (`runtime.share_of_cores`);
* gives worker i /metrics on --metrics-port + i, every series labelled worker="i" (0: each a
  free port; docs/workers.md says why not Prometheus' multiprocess mode);
* on SIGTERM or SIGINT sends SIGTERM to every worker at once, so they drain together (health
  NOT_SERVING, --drain-delay, --grace); it exits 0 once every worker has exited 0;
* restarts a worker that dies while serving; a worker that fails before it first serves, or
  dies more than MAX_RESTARTS times within RESTART_WINDOW_S, takes the server down: the others
  are drained and the parent exits 1, naming the worker and its exit code.

    onyx serve --workers 4 --port 50051 --metrics-port 50052   # metrics on 50052..50055
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from onyx.serve.config import ServerConfig

log = logging.getLogger(__name__)

# A worker dying more often than this within the window is broken, not unlucky: give up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
# Seconds between checks of the workers (a signal or a death is noticed within this).
POLL_S = 0.2
# Beyond --drain-delay + --grace, how long workers get to exit before they are killed.
EXIT_MARGIN_S = 15.0


class WorkerError(RuntimeError):
    """A worker could not start, or kept dying: the server cannot run as asked."""


class WorkerRegistry(CollectorRegistry):
    """A registry whose every sample carries `worker="<index>"` when collected (scraped)."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = str(worker)

    def collect(self) -> Iterator[Metric]:
        yield from _labelled(super().collect(), self.worker)

    def restricted_registry(self, names: Iterable[str]) -> _Restricted:  # type: ignore[override]
        return _Restricted(self, set(names))


@dataclass(frozen=True)
class _Restricted:
    """`?name[]=...` scrapes: only the named series, still labelled."""

    registry: WorkerRegistry
    names: set[str]

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            samples = [sample for sample in metric.samples if sample.name in self.names]
            if samples:
                restricted = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                restricted.samples = samples
                yield restricted


def _labelled(families: Iterable[Metric], worker: str) -> Iterator[Metric]:
    for family in families:
        labelled = Metric(family.name, family.documentation, family.type, family.unit)
        labelled.samples = [
            sample._replace(labels={**sample.labels, "worker": worker}) for sample in family.samples
        ]
        yield labelled


def worker_config(config: ServerConfig, index: int) -> ServerConfig:
    """What worker `index` serves: the shared port(s) with SO_REUSEPORT, its own metrics port."""
    metrics_port = config.metrics_port
    if metrics_port:  # 0 stays 0: each worker picks a free one and logs it
        metrics_port += index
    return replace(config, reuse_port=True, metrics_port=metrics_port)


def run_worker(config: ServerConfig, index: int, ready: Connection, lifeline: Connection) -> None:
    """A worker's main (in the spawned interpreter): serve until SIGTERM, telling the parent
    (`ready`) the ports once serving, and draining if the parent dies (`lifeline` ends)."""
    from onyx.serve.metrics import ServerMetrics
    from onyx.serve.server import ListenError, RunningServer, serve
    from onyx.settings.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index, named=config.log_format == "text"))
    threading.Thread(target=_drain_when_closed, args=(lifeline,), daemon=True).start()
    metrics = ServerMetrics(WorkerRegistry(index)) if config.metrics else None

    def on_ready(running: RunningServer) -> None:
        ready.send((running.port, running.metrics_port))
        ready.close()

    try:
        asyncio.run(serve(config, on_ready, metrics))
    except ListenError as exc:
        log.error("worker %d: %s", index, exc)
        raise SystemExit(1) from None


class _WorkerTag(logging.Filter):
    """Says which worker logged: a `worker` field (JSON lines), and in text, `name[worker i]`."""

    def __init__(self, index: int, named: bool) -> None:
        super().__init__()
        self.index, self.named = index, named

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.index
            if self.named:
                record.name = f"{record.name}[worker {self.index}]"
        return True


def _drain_when_closed(lifeline: Connection) -> None:
    """Wait for the parent's end of `lifeline` to close (the parent died, even of SIGKILL),
    then drain as on SIGTERM: no worker outlives its parent."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    ready: Connection
    # Never written: its closing, when the parent dies, tells the worker to drain.
    lifeline: Connection
    serving: bool = False


@dataclass
class Supervisor:
    """Starts, watches, restarts and stops the workers; `run` returns the exit status."""

    config: ServerConfig
    _workers: dict[int, _Worker] = field(default_factory=dict)
    _restarts: list[float] = field(default_factory=list)
    _stop: bool = False
    _context: multiprocessing.context.SpawnContext = field(
        default_factory=lambda: multiprocessing.get_context("spawn")
    )

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            for index in range(self.config.workers):
                self._start(index)
            self._watch()
        except WorkerError as exc:
            log.error("%s; stopping every worker", exc)
            self._stop_all()
            return 1
        return self._stop_all()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop:
            log.info("%s: draining %d workers", signal.Signals(signum).name, len(self._workers))
        self._stop = True

    def _start(self, index: int) -> None:
        ready, told = self._context.Pipe(duplex=False)
        watched, lifeline = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_worker,
            args=(worker_config(self.config, index), index, told, watched),
            name=f"onyx-worker-{index}",
        )
        process.start()
        told.close()
        watched.close()
        self._workers[index] = _Worker(index, process, ready, lifeline)

    def _watch(self) -> None:
        announced = False
        while not self._stop:
            waitables: list[Connection | int] = [w.process.sentinel for w in self._workers.values()]
            waitables += [w.ready for w in self._workers.values() if not w.serving]
            wait(waitables, POLL_S)
            for worker in list(self._workers.values()):
                self._check(worker)
            if not announced and all(w.serving for w in self._workers.values()):
                announced = True
                log.info(
                    "serving with %d workers on %s:%d (pids %s)",
                    len(self._workers),
                    self.config.host,
                    self.config.port,
                    ", ".join(str(w.process.pid) for w in self._workers.values()),
                )

    def _check(self, worker: _Worker) -> None:
        if not worker.serving and worker.ready.poll():
            with contextlib.suppress(EOFError):  # it died before telling: handled below
                port, metrics_port = worker.ready.recv()
                worker.serving = True
                log.info(
                    "worker %d (pid %d) serving on port %d, metrics on %s",
                    worker.index, worker.process.pid, port, metrics_port,
                )  # fmt: skip
        if worker.process.is_alive() or self._stop:
            return
        code = worker.process.exitcode
        if not worker.serving:
            raise WorkerError(f"worker {worker.index} exited with code {code} before serving")
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(self._restarts) > MAX_RESTARTS:
            raise WorkerError(
                f"worker {worker.index} exited with code {code}: more than {MAX_RESTARTS} "
                f"worker deaths within {RESTART_WINDOW_S:g} s"
            )
        log.error("worker %d exited with code %s; starting it again", worker.index, code)
        worker.ready.close()
        worker.lifeline.close()
        self._start(worker.index)

    def _stop_all(self) -> int:
        """SIGTERM every live worker at once, wait for them all; 0 if every one exited 0."""
        alive = [w for w in self._workers.values() if w.process.is_alive()]
        for worker in alive:
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        limit = time.monotonic() + self.config.drain_delay_s + self.config.grace_s + EXIT_MARGIN_S
        for worker in alive:
            worker.process.join(max(0.0, limit - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker %d did not stop in time; killing it", worker.index)
                worker.process.kill()
                worker.process.join()
        # A worker told to stop before it installed its handlers (still loading) dies of it.
        failed = {
            w.index: w.process.exitcode
            for w in self._workers.values()
            if w.process.exitcode != 0 and (w.serving or w.process.exitcode != -signal.SIGTERM)
        }
        if failed:
            log.error("workers exited with codes %s", failed)
            return 1
        log.info("stopped %d workers", len(self._workers))
        return 0


def serve_workers(config: ServerConfig) -> int:
    """Run `config.workers` workers on one port until SIGTERM/SIGINT; returns the exit status.
    A port that cannot be had raises `server.ListenError` before any worker starts."""
    with contextlib.ExitStack() as held:
        port = held.enter_context(_reserved(config.host, config.port, config.reuse_port))
        config = replace(config, port=port)
        if config.http_port is not None:
            http = held.enter_context(_reserved(config.host, config.http_port, config.reuse_port))
            config = replace(config, http_port=http)
        return Supervisor(config).run()


@contextlib.contextmanager
def _reserved(host: str, port: int, shared: bool) -> Iterator[int]:
    """Hold `host:port` (0: a free port) for the workers: bound with SO_REUSEPORT, never
    listening, so only SO_REUSEPORT sockets of this user can join it. Unless `shared`
    (--reuse-port), a port another server already has is an error, as without workers."""
    from onyx.serve.server import ListenError

    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    found = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, address = found[0][0], found[0][4]
    try:
        if port and not shared:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        holder = socket.socket(family, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(address)
    except OSError as exc:
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server? "
            "--reuse-port lets several servers share a port)"
        ) from exc
    with holder:
        yield int(holder.getsockname()[1])
