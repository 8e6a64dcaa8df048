"""deploy/prometheus/alerts.yml passes `promtool check rules` and its unit tests (each alert fires
on the series it is for, and not on the others); the alerts, the prometheus-adapter rules, the
HPA and the KEDA trigger only name metrics a running server exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, K8S, kustomize, one
from tests.serve.test_dashboard import METRIC, _exported_samples
from tests.tools import missing_tool

RULES = DEPLOY / "prometheus" / "alerts.yml"


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        missing_tool("promtool (Debian's prometheus package) is not installed")
    return binary


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, check=False,
                          cwd=RULES.parent, timeout=60)  # fmt: skip


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    checked = _run("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_alerts_we_promise_exist() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert {"OnyxHighErrorRatio", "OnyxHighLatencyP99", "OnyxModelNotReady",
            "OnyxQueueNearCapacity"} <= alerts  # fmt: skip
    unit_tested = {t["alertname"] for t in
                   yaml.safe_load((RULES.parent / "alerts_test.yml").read_text())["tests"][0][
                       "alert_rule_test"]}  # fmt: skip
    assert alerts <= unit_tested


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    broken = RULES.read_text().replace("> 0.05", "> > 0.05", 1)
    (tmp_path / "alerts.yml").write_text(broken)
    result = subprocess.run([_promtool(), "check", "rules", str(tmp_path / "alerts.yml")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode != 0


def _expressions() -> dict[str, str]:
    """Every PromQL expression in deploy/ outside the dashboard, by where it is."""
    exprs = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            exprs[rule.get("alert") or rule["record"]] = rule["expr"]
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "rules.yaml").read_text())
    for rule in adapter["rules"]:
        exprs[f"adapter {rule['name']['as']}"] = rule["seriesQuery"]
    scaled = yaml.safe_load((K8S / "components" / "keda" / "scaledobject.yaml").read_text())
    for trigger in scaled["spec"]["triggers"]:
        if trigger["type"] == "prometheus":
            exprs["keda"] = trigger["metadata"]["query"]
    return exprs


def test_queries_use_exported_metrics(tmp_path: Path) -> None:
    exported = _exported_samples(tmp_path)
    expressions = _expressions()
    for where, expr in expressions.items():
        names = set(METRIC.findall(expr))
        recorded = set(re.findall(r"\bonyx:[a-z0-9_:]+", expr))
        assert names or recorded, (where, expr)
        assert recorded <= set(expressions), f"{where} uses unknown recording rules {recorded}"
        missing = {n for n in names if n not in exported}
        assert not missing, f"{where} queries metrics the server does not export: {missing}"


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_hpa_metrics_are_served_by_the_adapter(overlay: str) -> None:
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "rules.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]}
    hpa = one(kustomize(K8S / "overlays" / overlay), "HorizontalPodAutoscaler")
    metrics = hpa["spec"]["metrics"]
    pods_metrics = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert pods_metrics and set(pods_metrics) <= served
    for rule in adapter["rules"]:  # per pod: the adapter needs the pod and namespace labels
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_keda_scales_like_the_hpa() -> None:
    objects = kustomize(K8S / "overlays" / "keda")
    (trigger,) = [t for t in one(objects, "ScaledObject")["spec"]["triggers"]
                  if t["type"] == "prometheus"]  # fmt: skip
    hpa = one(kustomize(K8S / "overlays" / "cpu"), "HorizontalPodAutoscaler")
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] in trigger["metadata"]["query"]
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["threshold"] == pods["target"]["averageValue"]
