"""`onyx serve` as a real process (SIGTERM drains in-flight requests, exits 0) and TLS.

python -m pytest tests/serve/test_process.py
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import TlsConfig
from tests.checkout import PYTHONPATH
from tests.serve.tiny_models import image_config, random_batch, write_image_model
from tests.serve.wire import tensor_request

ROOT = Path(__file__).resolve().parents[2]


def start_process(repository: Path, *flags: str) -> tuple[subprocess.Popen[str], int]:
    """Start `python -m onyx serve` on a free port; return it and the port it reported."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onyx",
            "serve",
            "--repository",
            str(repository),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics-port",
            "0",  # never collide with whatever listens on the default port
            *flags,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1))
    process.wait(10)
    process.stderr.close()
    raise AssertionError(f"server exited with {process.returncode} before serving")


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    root = tmp_path / "models"
    config = image_config(max_batch_size=8, max_queue_delay_us=0)
    # Enough work that the requests are still queued or running 0.2 s later, even on a fast box.
    write_image_model(root, "tiny", 1, config=config, hidden_layers=24)
    process, port = start_process(root, "--grace", "60")
    try:
        client = api_grpc.ClassifierStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        calls = [
            client.Classify.future(tensor_request(random_batch(256, seed=i)), timeout=120)
            for i in range(4)
        ]
        time.sleep(0.2)  # the requests are in the server's queue or running
        assert not all(call.done() for call in calls), "too fast to test draining"
        process.send_signal(signal.SIGTERM)
        responses = [call.result() for call in calls]
        assert all(len(r.results) == 256 for r in responses)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        log = process.stderr.read()
        process.stderr.close()
    assert "stopped" in log


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_tls_with_client_certificates(
    repo: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    server_cert, server_key = self_signed(tmp_path, "localhost")
    client_cert, client_key = self_signed(tmp_path, "client")
    tls = TlsConfig(cert=server_cert, key=server_key, client_ca=client_cert)
    server = start_server(repo, tls=tls)
    address = f"localhost:{server.port}"

    def classify(credentials: grpc.ChannelCredentials) -> int:
        channel = grpc.secure_channel(address, credentials)
        response = api_grpc.ClassifierStub(channel).Classify(
            tensor_request(random_batch(1)), timeout=10
        )
        channel.close()
        return int(response.version)

    trusted = grpc.ssl_channel_credentials(
        root_certificates=server_cert.read_bytes(),
        private_key=client_key.read_bytes(),
        certificate_chain=client_cert.read_bytes(),
    )
    assert classify(trusted) == 1
    anonymous = grpc.ssl_channel_credentials(root_certificates=server_cert.read_bytes())
    with pytest.raises(grpc.RpcError) as info:
        classify(anonymous)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):  # plaintext against a TLS port
        api_grpc.ClassifierStub(grpc.insecure_channel(address)).Classify(
            tensor_request(random_batch(1)), timeout=5
        )
