"""Every dashboard query evaluated by a real Prometheus scraping a real server (slow; needs
Debian's `prometheus` package: apt-get install prometheus)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from tests.serve.test_dashboard import DASHBOARD, _queries
from tests.serve.tiny_models import png_bytes, write_image_model
from tests.tools import missing_tool

pytestmark = pytest.mark.slow
MUST_HAVE_DATA = (
    "onyx_request_duration_seconds",
    "onyx_inputs_total",
    "onyx_batch_size",
    "onyx_model_ready",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _traffic(address: str, stop: threading.Event) -> None:
    good = api.ClassifyRequest(model="tiny", inputs=[api.Input(image=png_bytes())])
    bad = api.ClassifyRequest(model="tiny", inputs=[api.Input(image=b"junk")])
    with grpc.insecure_channel(address) as channel:
        stub = api_grpc.ClassifierStub(channel)
        while not stop.wait(0.02):
            stub.Classify(good)
            with contextlib.suppress(grpc.RpcError):
                stub.Classify(bad)


def _query(prometheus: str, expr: str) -> dict[str, object]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_dashboard_queries_return_data_from_real_prometheus(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        missing_tool("Debian's prometheus package is not installed")
    write_image_model(tmp_path / "models")
    config = ServerConfig(repository=tmp_path / "models", host="127.0.0.1", port=0, metrics_port=0)
    with ServerThread(config) as server:
        assert server.running is not None
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: onyx\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{server.running.metrics_port}']}}]\n"
        )
        port = _free_port()
        stop = threading.Event()
        feeder = threading.Thread(target=_traffic, args=(server.address, stop), daemon=True)
        feeder.start()
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(8)  # several scrapes, so rate() has points to work with
            results = _evaluate(f"http://127.0.0.1:{port}")
        finally:
            stop.set()
            process.terminate()
            process.wait(timeout=30)
            feeder.join(timeout=10)
    empty = [q for q, r in results.items() if not r and any(m in q for m in MUST_HAVE_DATA)]
    assert not empty, f"queries with no data: {empty}"


def _evaluate(prometheus: str) -> dict[str, list[object]]:
    results: dict[str, list[object]] = {}
    for raw in _queries(json.loads(DASHBOARD.read_text())):
        expr = raw.replace("$__rate_interval", "5s").replace("$__range", "1m")
        for variable in ("$model", "$job", "$instance"):
            expr = expr.replace(variable, ".*")
        answer = _query(prometheus, expr)
        assert answer["status"] == "success", (expr, answer)
        data = answer["data"]
        assert isinstance(data, dict)
        results[raw] = data["result"]
    return results
