"""What an operator of several replicas needs from deploy/grafana/onyx.json (its queries are
checked against a real server's metrics in tests/serve/test_dashboard*.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.serve.test_dashboard import DASHBOARD, METRIC

SELECTOR = re.compile(r"\b((?:onyx|grpc_server|process)_[a-z0-9_]+)(\{[^}]*\})?")


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panel(title_part: str) -> dict[str, Any]:
    (panel,) = [p for p in _dashboard()["panels"] if title_part in p["title"]]
    return panel


def test_job_and_instance_variables_scope_every_query() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert {"datasource", "job", "instance", "model"} <= set(variables)
    assert "$job" in variables["instance"]["query"]["query"]  # instances of the chosen jobs
    for panel in _dashboard()["panels"]:
        for target in panel["targets"]:
            for name, labels in SELECTOR.findall(target["expr"]):
                assert 'job=~"$job"' in labels and 'instance=~"$instance"' in labels, (
                    panel["title"], name, target["expr"])  # fmt: skip


def test_batch_size_buckets_in_numeric_order() -> None:
    # Grafana orders `le` as strings (1, 12, 128, 16...) unless the query's format is heatmap,
    # which sorts the buckets as numbers and turns cumulative counts into per-bucket ones.
    (target,) = _panel("Batch size distribution")["targets"]
    assert "onyx_batch_size_bucket" in target["expr"] and "by (le)" in target["expr"]
    assert target["format"] == "heatmap"


def test_readiness_stat_maps_values_to_words() -> None:
    panel = _panel("readiness")
    assert panel["type"] == "stat"
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    assert {k: v["text"] for k, v in mapping["options"].items()} == {
        "0": "NOT READY", "1": "READY"}  # fmt: skip


def test_a_panel_shows_refusals_and_drains() -> None:
    exprs = " ".join(t["expr"] for t in _panel("Refusals and drains")["targets"])
    assert "RESOURCE_EXHAUSTED" in exprs and "UNAVAILABLE" in exprs
    assert "onyx_model_ready" in exprs  # ready replicas: a drain shows as a dip
    assert all(METRIC.search(t["expr"]) for t in _panel("Refusals")["targets"])
