"""`onyx serve --workers N` as real processes: one port shared, metrics per worker, drained
together on SIGTERM, a dead worker restarted, a worker that cannot start fatal.

python -m pytest tests/serve/test_workers.py
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.config import ServerConfig
from onyx.serve.workers import WorkerRegistry, worker_config
from tests.checkout import PYTHONPATH
from tests.serve.tiny_models import image_config, random_batch, write_image_model
from tests.serve.wire import tensor_request

ROOT = Path(__file__).resolve().parents[2]
SERVING = re.compile(r"worker (\d+) \(pid (\d+)\) serving on port (\d+), metrics on (\d+)")


class Served:
    """`onyx serve --workers N` in a subprocess, its stderr collected line by line."""

    def __init__(self, repository: Path, *flags: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onyx", "serve", "--repository", str(repository),
             "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", *flags],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match[str]]:
        """The first `count` matches of `pattern` in the log, waiting for them."""
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            found = list(re.finditer(pattern, self.log))
            if len(found) >= count:
                return found[:count]
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r} in the log:\n{self.log}")

    def workers(self, count: int) -> dict[int, tuple[int, int, int]]:
        """worker index -> (pid, port, metrics port), once `count` workers serve."""
        found = self.wait_for(SERVING.pattern, count)
        return {int(m[1]): (int(m[2]), int(m[3]), int(m[4])) for m in found}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(30)
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.stop()


def classify_on_fresh_connections(port: int, count: int) -> None:
    """`count` requests, each on its own TCP connection (the kernel picks a worker per one)."""
    for seed in range(count):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            response = api_grpc.ClassifierStub(channel).Classify(
                tensor_request(random_batch(1, seed=seed)), timeout=30
            )
            assert len(response.results) == 1


def requests_counted(metrics_port: int) -> dict[str, float]:
    """worker label -> successful Classify requests, from one worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "onyx_requests_total" and sample.labels["code"] == "OK":
                worker = sample.labels["worker"]
                counted[worker] = counted.get(worker, 0) + sample.value
    return counted


def test_workers_share_one_port_each_with_its_own_labelled_metrics(
    repo: Path, served: list[Served]
) -> None:
    server = Served(repo, "--workers", "2")
    served.append(server)
    workers = server.workers(2)
    ports = {port for _, port, _ in workers.values()}
    assert len(ports) == 1, workers  # port 0 was resolved once, by the parent
    (port,) = ports
    assert len({pid for pid, _, _ in workers.values()}) == 2
    classify_on_fresh_connections(port, 24)
    counted = {str(i): requests_counted(m)[str(i)] for i, (_, _, m) in workers.items()}
    assert sum(counted.values()) == 24
    assert all(count > 0 for count in counted.values()), counted  # 2 * 2**-24 to fail by luck


@pytest.mark.slow
def test_sigterm_drains_every_worker_and_exits_0(tmp_path: Path, served: list[Served]) -> None:
    root = tmp_path / "models"
    config = image_config(max_batch_size=8, max_queue_delay_us=0)
    write_image_model(root, "tiny", 1, config=config, hidden_layers=24)  # slow enough to drain
    server = Served(root, "--workers", "2", "--grace", "60")
    served.append(server)
    workers = server.workers(2)
    port = next(iter(workers.values()))[1]
    channels = [
        grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(6)
    ]
    calls = [
        api_grpc.ClassifierStub(channel).Classify.future(
            tensor_request(random_batch(128, seed=i)), timeout=120
        )
        for i, channel in enumerate(channels)
    ]
    time.sleep(0.3)  # the requests are in the workers' queues or running
    assert not all(call.done() for call in calls), "too fast to test draining"
    server.process.send_signal(signal.SIGTERM)
    assert all(len(call.result().results) == 128 for call in calls)
    assert server.process.wait(90) == 0
    for channel in channels:
        channel.close()
    server.stop()
    assert "stopped 2 workers" in server.log
    for pid, _, _ in workers.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every worker exited, none left behind


@pytest.mark.slow
def test_a_dead_worker_is_started_again(repo: Path, served: list[Served]) -> None:
    server = Served(repo, "--workers", "2")
    served.append(server)
    workers = server.workers(2)
    pid, port, _ = workers[1]
    os.kill(pid, signal.SIGKILL)
    server.wait_for(r"worker 1 exited with code -9; starting it again")
    again = server.workers(3)  # worker 1 announces itself a second time
    assert {index for index in again} == {0, 1}
    assert [m for m in SERVING.finditer(server.log)][-1][2] != str(pid)
    classify_on_fresh_connections(port, 4)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0


def test_a_worker_that_cannot_start_takes_the_server_down(repo: Path, served: list[Served]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        # Worker 0 gets busy - 1 (free or not: either way one worker cannot start), 1 gets busy.
        server = Served(repo, "--workers", "2", "--metrics-port", str(busy - 1))
        served.append(server)
        assert server.process.wait(90) == 1
    server.stop()
    assert re.search(
        r"worker \d exited with code 1 before serving; stopping every worker", server.log
    )
    assert f"cannot serve metrics on 127.0.0.1:{busy}" in server.log


def test_a_busy_port_is_refused_before_any_worker_starts(repo: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "onyx", "serve", "--repository", str(repo),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )  # fmt: skip
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "worker" not in result.stderr


def test_worker_metrics_ports_are_consecutive_and_ports_shared() -> None:
    config = ServerConfig(port=50051, metrics_port=9100, workers=3)
    assert [worker_config(config, i).metrics_port for i in range(3)] == [9100, 9101, 9102]
    assert all(worker_config(config, i).reuse_port for i in range(3))
    assert worker_config(ServerConfig(metrics_port=0), 2).metrics_port == 0  # each a free one
    assert worker_config(ServerConfig(metrics_port=None), 2).metrics_port is None


def test_every_series_of_a_worker_registry_carries_its_worker_label() -> None:
    registry = WorkerRegistry(3)
    Counter("calls", "Calls.", ["model"], registry=registry).labels("pets").inc(2)
    Gauge("depth", "Depth.", registry=registry).set(5)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert {s.labels["worker"] for f in families.values() for s in f.samples} == {"3"}
    assert families["calls"].samples[0].labels == {"model": "pets", "worker": "3"}
    restricted = generate_latest(registry.restricted_registry(["depth"])).decode()
    assert 'depth{worker="3"} 5.0' in restricted
    assert "calls" not in restricted


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_parent(repo: Path, served: list[Served]) -> None:
    server = Served(repo, "--workers", "2")
    served.append(server)
    workers = server.workers(2)
    server.process.kill()  # no chance to stop its workers: they notice on their own
    server.process.wait(30)
    limit = time.monotonic() + 30
    alive = {pid for pid, _, _ in workers.values()}
    while alive and time.monotonic() < limit:
        alive = {pid for pid in alive if _running(pid)}
        time.sleep(0.1)
    assert not alive


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_explicit_model_control_is_refused_with_workers(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "onyx", "serve", "--repository", str(repo), "--port", "0",
         "--workers", "2", "--model-control", "explicit"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )  # fmt: skip
    assert result.returncode == 2
    assert "--workers > 1 needs --model-control none or poll" in result.stderr
