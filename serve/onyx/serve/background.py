"""Run a server on its own event loop in a background thread (the demo and tests use this).

with ServerThread(ServerConfig(repository=path, host="127.0.0.1", port=0)) as server:
    Client(f"127.0.0.1:{server.port}").classify(...)
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType

from onyx.serve.config import ServerConfig
from onyx.serve.metrics import ServerMetrics
from onyx.serve.observers import ObserverFactory
from onyx.serve.server import RunningServer, create_server


class ServerThread:
    def __init__(
        self,
        config: ServerConfig,
        start_timeout_s: float = 120.0,
        batch_observers: ObserverFactory | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.config = config
        self._batch_observers = batch_observers
        self._metrics = metrics
        self._start_timeout_s = start_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="onyx-server", daemon=True
        )
        self.running: RunningServer | None = None

    @property
    def port(self) -> int:
        assert self.running is not None, "server not started"
        return self.running.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        self.running = self.call(
            create_server(self.config, self._metrics, self._batch_observers), self._start_timeout_s
        )
        return self

    def call(self, coroutine: object, timeout_s: float | None = None) -> RunningServer:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[RunningServer] = asyncio.run_coroutine_threadsafe(
            coroutine,  # type: ignore[arg-type]
            self._loop,
        )
        return future.result(timeout_s)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.running is not None:
            self.call(self.running.stop(grace_s))
            self.running = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
