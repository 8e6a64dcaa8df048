"""Client channels: gRPC's retry policy, round robin over several servers, TLS from `onyx
classify`, and bulk classify's own retries of refused stream items and broken streams.

Flaky servers here are real gRPC servers (port 0) whose servicer refuses on purpose, so each
retry path is exercised deterministically; TLS runs against a real `onyx serve` with TLS.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from onyx.client.bulk import Backoff, BulkJob, classify_source
from onyx.client.channels import ChannelOptions, open_channel, service_config
from onyx.client.cli import classify_command
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import TlsConfig
from tests.client.test_bulk import make_folder, read
from tests.serve.test_process import self_signed

QUICK = Backoff(attempts=5, initial_s=0.01, max_s=0.05)


def answer(model: str, label: str) -> api.ClassifyResponse:
    classes = [api.ClassScore(label=label, index=0, score=1.0)]
    return api.ClassifyResponse(model=model, results=[api.Classification(classes=classes)])


class Flaky(api_grpc.ClassifierServicer):
    """Classify: refuses each call's first `refusals` attempts. ClassifyStream: answers each
    item's first attempt RESOURCE_EXHAUSTED, and breaks the first stream (UNAVAILABLE) after
    `break_after` answers."""

    def __init__(self, name: str, refusals: int = 0, break_after: int = 0) -> None:
        self.name, self.refusals, self.break_after = name, refusals, break_after
        self.calls = 0
        self.streams = 0
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def Classify(
        self, request: api.ClassifyRequest, context: grpc.ServicerContext
    ) -> api.ClassifyResponse:
        with self._lock:
            self.calls += 1
            refuse = self.calls <= self.refusals
        if refuse:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
        return answer(request.model, self.name)

    def ClassifyStream(
        self, requests: Iterator[api.ClassifyStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[api.ClassifyStreamResponse]:
        with self._lock:
            self.streams += 1
            first_stream = self.streams == 1
        for count, item in enumerate(requests):
            if first_stream and self.break_after and count == self.break_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
            with self._lock:
                self.seen[item.id] += 1
                attempt = self.seen[item.id]
            if attempt == 1:
                yield api.ClassifyStreamResponse(id=item.id, error_code=8, error_message="full")
            else:
                yield api.ClassifyStreamResponse(
                    id=item.id, response=answer(item.request.model, self.name)
                )


@pytest.fixture
def flaky_server() -> Iterator[Callable[[Flaky], int]]:
    servers: list[grpc.Server] = []

    def start(servicer: Flaky) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        api_grpc.add_ClassifierServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop(None)


def test_unary_calls_are_retried_by_the_service_config(
    flaky_server: Callable[[Flaky], int],
) -> None:
    servicer = Flaky("a", refusals=2)
    target = f"127.0.0.1:{flaky_server(servicer)}"
    request = api.ClassifyRequest(model="m", inputs=[api.Input(text="x")])
    # No retry policy: the refusal surfaces.
    with grpc.insecure_channel(target) as plain, pytest.raises(grpc.RpcError) as info:
        api_grpc.ClassifierStub(plain).Classify(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with open_channel(target) as channel:
        response = api_grpc.ClassifierStub(channel).Classify(request, timeout=10)
    assert response.results[0].classes[0].label == "a"
    assert servicer.calls == 3  # 1 refused above, 1 refused and retried, 1 answered
    policy = service_config(ChannelOptions())["methodConfig"][0]["retryPolicy"]
    assert set(policy["retryableStatusCodes"]) == {"RESOURCE_EXHAUSTED", "UNAVAILABLE"}


def test_round_robin_spreads_calls_over_every_address(
    flaky_server: Callable[[Flaky], int],
) -> None:
    first, second = Flaky("a"), Flaky("b")
    target = f"ipv4:127.0.0.1:{flaky_server(first)},127.0.0.1:{flaky_server(second)}"
    request = api.ClassifyRequest(model="m", inputs=[api.Input(text="x")])
    with open_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = api_grpc.ClassifierStub(channel)
        labels = Counter(
            stub.Classify(request, timeout=10).results[0].classes[0].label for _ in range(20)
        )
    assert labels["a"] >= 5 and labels["b"] >= 5, labels  # pick_first would send all 20 to one


def test_refused_items_and_a_broken_stream_are_retried(
    flaky_server: Callable[[Flaky], int], tmp_path: Path
) -> None:
    servicer = Flaky("ok", break_after=4)
    images = make_folder(tmp_path / "photos", 12)
    (tmp_path / "photos" / "broken.png").unlink()
    job = BulkJob(tmp_path / "photos", "m", tmp_path / "out.csv", concurrency=3, progress=False,
                  backoff=QUICK)  # fmt: skip
    with open_channel(f"127.0.0.1:{flaky_server(servicer)}") as channel:
        summary = classify_source(channel, job)
    assert summary.failed == [] and summary.classified == 12
    assert servicer.streams == 2 and summary.retried >= 12
    assert sorted(r["path"] for r in read(tmp_path / "out.csv")) == sorted(map(str, images))


def test_items_still_refused_after_the_last_attempt_fail_the_run(
    flaky_server: Callable[[Flaky], int], tmp_path: Path
) -> None:
    port = flaky_server(Flaky("ok"))
    make_folder(tmp_path / "photos", 3)
    (tmp_path / "photos" / "broken.png").unlink()
    job = BulkJob(tmp_path / "photos", "m", tmp_path / "out.csv", progress=False,
                  backoff=Backoff(attempts=1))  # fmt: skip
    with open_channel(f"127.0.0.1:{port}") as channel:
        summary = classify_source(channel, job)
    assert summary.classified == 0 and len(summary.failed) == 3
    fresh = flaky_server(Flaky("ok"))  # refuses every item's first attempt again
    result = CliRunner().invoke(
        classify_command, [str(tmp_path / "photos"), "-m", "m", "-s", f"127.0.0.1:{fresh}"]
    )  # the CLI's default 5 attempts get every item through
    assert result.exit_code == 0, result.output


def test_dns_targets_are_accepted(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(repo)
    make_folder(tmp_path / "photos", 2)
    (tmp_path / "photos" / "broken.png").unlink()
    result = CliRunner().invoke(
        classify_command,
        [str(tmp_path / "photos"), "-m", "tiny", "-s", f"dns:///127.0.0.1:{server.port}"],
    )
    assert result.exit_code == 0, result.output
    assert "2 classified" in result.output


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_classify_over_mutual_tls(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server_cert, server_key = self_signed(tmp_path, "localhost")
    client_cert, client_key = self_signed(tmp_path, "client")
    server = start_server(repo, tls=TlsConfig(server_cert, server_key, client_ca=client_cert))
    make_folder(tmp_path / "photos", 2)
    (tmp_path / "photos" / "broken.png").unlink()
    base = [str(tmp_path / "photos"), "-m", "tiny", "-s", f"localhost:{server.port}"]
    runner = CliRunner()
    trusted = ["--tls-ca", str(server_cert), "--tls-cert", str(client_cert),
               "--tls-key", str(client_key)]  # fmt: skip
    result = runner.invoke(classify_command, [*base, *trusted])
    assert result.exit_code == 0, result.output
    assert "2 classified" in result.output
    image = str(next((tmp_path / "photos").rglob("*.png")))
    single = runner.invoke(classify_command, [*base[1:], *trusted, image])
    assert single.exit_code == 0 and single.output.startswith("model tiny v1")
    anonymous = runner.invoke(classify_command, [*base, "--tls-ca", str(server_cert)])
    assert anonymous.exit_code == 1 and "UNAVAILABLE" in anonymous.output
    plaintext = runner.invoke(classify_command, base)
    assert plaintext.exit_code == 1
    half = runner.invoke(classify_command, [*base, "--tls-cert", str(client_cert)])
    assert half.exit_code == 2 and "--tls-key" in half.output
