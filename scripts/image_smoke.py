"""Smoke-test a built serving image from the inside (the Dockerfile's `smoke` stage runs it).

Where no container can be started (as on the project's own machines), the image is checked
while it is built: `docker build --target smoke .` starts `onyx serve` inside the serving image
on a tiny model, classifies an image over gRPC, checks health and /metrics, and stops it with
SIGTERM. The stage is skipped by a normal build.

    PYTHONPATH=. python scripts/image_smoke.py      # from a checkout, after the development install
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from onyx.client.classifier import Client
from onyx.proto.v1 import classifier_pb2 as api
from tests.serve.tiny_models import LABELS, png_bytes, write_image_model

PORT, METRICS_PORT = 50051, 50052


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        write_image_model(Path(work))
        command = [sys.executable, "-m", "onyx", "serve", "--repository", work, "--port", str(PORT),
                   "--metrics-port", str(METRICS_PORT)]  # fmt: skip
        server = subprocess.Popen(command)
        try:
            check(LABELS, png_bytes())
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=30)
        if code != 0:
            sys.exit(f"onyx serve exited with {code} on SIGTERM")
    print("image smoke test passed: classify, health, metrics, graceful stop")


def check(labels: list[str], image: bytes) -> None:
    address = f"127.0.0.1:{PORT}"
    with Client(address) as client:
        client.wait_ready(60)  # `onyx serve` listens once its models are loaded
        response = client.classify("tiny", [api.Input(image=image)], top_k=2)
        top = response.results[0].classes
        if len(top) != 2 or top[0].label not in labels:
            sys.exit(f"unexpected answer: {response}")
    with grpc.insecure_channel(address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
        if status != health_pb2.HealthCheckResponse.SERVING:
            sys.exit(f"health says {status}")
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    if "onyx_requests_total{" not in text:
        sys.exit("/metrics has no onyx_requests_total")


if __name__ == "__main__":
    main()
