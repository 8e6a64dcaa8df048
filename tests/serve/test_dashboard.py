"""The Grafana dashboard only queries metrics that a running server really exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from tests.serve.tiny_models import png_bytes, write_image_model

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "onyx.json"
METRIC = re.compile(r"\b((?:onyx|grpc_server|process)_[a-z0-9_]+)")
SAMPLE_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def _queries(dashboard: dict[str, object]) -> list[str]:
    panels = dashboard["panels"]
    assert isinstance(panels, list)
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _exported_samples(tmp_path: Path) -> set[str]:
    write_image_model(tmp_path)
    config = ServerConfig(repository=tmp_path, host="127.0.0.1", port=0, metrics_port=0)
    with ServerThread(config) as server, grpc.insecure_channel(server.address) as channel:
        stub = api_grpc.ClassifierStub(channel)
        stub.Classify(api.ClassifyRequest(model="tiny", inputs=[api.Input(image=png_bytes())]))
        assert server.running is not None
        url = f"http://127.0.0.1:{server.running.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    return {
        line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and line[0] != "#"
    }


def test_every_dashboard_query_uses_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) >= 12
    exported = _exported_samples(tmp_path)
    missing = set()
    for query in queries:
        names = METRIC.findall(query)
        assert names, f"query uses no Onyx metric: {query}"
        missing |= {n for n in names if n not in exported}
    assert not missing, f"dashboard queries metrics the server does not export: {sorted(missing)}"


def test_dashboard_covers_what_operators_watch() -> None:
    text = "\n".join(_queries(json.loads(DASHBOARD.read_text())))
    for needed in (
        "histogram_quantile(0.99, sum by (le, model) (rate(onyx_request_duration_seconds_bucket",
        "onyx_batch_size_bucket",
        "onyx_queue_depth",
        "onyx_queue_duration_seconds_bucket",
        "onyx_compute_duration_seconds_bucket",
        "onyx_model_ready",
        'code!="OK"',
    ):
        assert needed in text, needed
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert all(t.get("datasource") for p in panels for t in p["targets"])
