"""The Dockerfile's HEALTHCHECK command, run as is against a real server: it follows ONYX_PORT,
answers readiness (the overall health entry, not "some service is up"), and `liveness` stays
SERVING when readiness is not."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.serve.frontends.health import LIVENESS_SERVICE, NOT_SERVING
from tests.checkout import PYTHONPATH

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _healthcheck() -> list[str]:
    found = re.search(r"(?m)^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", DOCKERFILE.read_text())
    assert found, "no exec-form HEALTHCHECK in the Dockerfile"
    command: list[str] = json.loads(found.group(1))
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def _probe(port: int, *extra: str) -> int:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "ONYX_PORT": str(port)}
    result = subprocess.run([*_healthcheck(), *extra], env=env, capture_output=True,
                            check=False, timeout=30)  # fmt: skip
    return result.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthcheck_follows_onyx_port_and_reads_readiness(tmp_path: Path) -> None:
    # An empty repository is ready only when readiness is lenient (strict: no model, not ready).
    config = ServerConfig(
        repository=tmp_path, host="127.0.0.1", port=0, metrics=False, lenient_readiness=True
    )
    with ServerThread(config) as server:
        assert server.running is not None
        health = server.running.health
        assert _probe(server.port) == 0
        assert _probe(_free_port()) == 1  # nobody there: unhealthy, not an error
        server.call(health.set("", NOT_SERVING))  # type: ignore[arg-type]
        assert _probe(server.port) == 1
        assert _probe(server.port, LIVENESS_SERVICE) == 0
    assert "50051" not in " ".join(_healthcheck())
