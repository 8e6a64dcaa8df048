"""Bind what the operator asked for: a busy port is a one-line error, /metrics binds --host (or
--metrics-host) and speaks TLS when gRPC does.

python -m pytest tests/serve/test_ports.py
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from onyx.serve.background import ServerThread
from onyx.serve.config import TlsConfig
from tests.checkout import PYTHONPATH
from tests.serve.test_process import ROOT, self_signed

Start = Callable[..., ServerThread]


def serve_once(repository: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`onyx serve` expected to fail at start."""
    return subprocess.run(
        [sys.executable, "-m", "onyx", "serve", "--repository", str(repository), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {expected}"), lines[0]
    assert "Address already in use" in lines[0]


def test_a_busy_grpc_port_is_a_one_line_error(repo: Path, start_server: Start) -> None:
    # The first server asks for SO_REUSEPORT, as every gRPC server did by default: a second one
    # would have shared its port silently, splitting the traffic.
    first = start_server(repo, reuse_port=True)
    result = serve_once(
        repo, "--host", "127.0.0.1", "--port", str(first.port), "--metrics-port", "0"
    )
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{first.port}")


def test_a_busy_metrics_port_is_a_one_line_error(repo: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = serve_once(repo, "--host", "127.0.0.1", "--port", "0", "--metrics-port", str(port))
    assert_one_line_error(result, f"cannot serve metrics on 127.0.0.1:{port}")
    assert "Event loop is closed" not in result.stderr


def test_two_servers_share_a_port_only_when_both_ask(repo: Path, start_server: Start) -> None:
    first = start_server(repo, reuse_port=True)
    config = dataclasses.replace(first.config, port=first.port)
    with ServerThread(config) as second:
        assert second.port == first.port


def metrics_address(server: ServerThread) -> tuple[str, int]:
    assert server.running is not None and server.running.metrics_endpoint is not None
    host, port = server.running.metrics_endpoint.server.server_address[:2]
    return str(host), int(port)


def test_metrics_bind_the_grpc_host(repo: Path, start_server: Start) -> None:
    server = start_server(repo, metrics_port=0)  # host 127.0.0.1
    host, port = metrics_address(server)
    assert host == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert b"onyx_model_ready" in response.read()


def test_metrics_host_overrides_the_grpc_host(repo: Path, start_server: Start) -> None:
    server = start_server(repo, metrics_port=0, metrics_host="127.0.0.2")
    host, port = metrics_address(server)
    assert host == "127.0.0.2"
    with pytest.raises(urllib.error.URLError):  # nothing of it on the gRPC host
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10) as response:
        assert response.status == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_metrics_use_the_grpc_certificate_and_client_ca(
    repo: Path, tmp_path: Path, start_server: Start
) -> None:
    server_cert, server_key = self_signed(tmp_path, "localhost")
    client_cert, client_key = self_signed(tmp_path, "client")
    tls = TlsConfig(cert=server_cert, key=server_key, client_ca=client_cert)
    server = start_server(repo, tls=tls, metrics_port=0)
    _, port = metrics_address(server)
    url = f"https://127.0.0.1:{port}/metrics"
    trusted = ssl.create_default_context(cafile=str(server_cert))
    trusted.load_cert_chain(str(client_cert), str(client_key))
    with urllib.request.urlopen(url, timeout=10, context=trusted) as response:
        assert b"onyx_model_ready" in response.read()
    anonymous = ssl.create_default_context(cafile=str(server_cert))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(url, timeout=10, context=anonymous).read()
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
