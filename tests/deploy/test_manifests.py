"""deploy/k8s and deploy/kserve, offline: every overlay builds with kustomize, every core object
validates against the Kubernetes schemas (kubernetes-validate, strict), every custom resource
against the fields we rely on (crd_fields), and the pieces agree with each other and with
`onyx serve`: its options exist, probes and Services use its ports, the termination grace
covers its drain, the HPA asks for a metric the adapter serves and the server exports."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest

from onyx.serve.cli import serve_command
from tests.deploy.crd_fields import BY_KIND
from tests.deploy.manifests import DEPLOY, K8S, OVERLAYS, Manifest, kustomize, load, one

# The Kubernetes version whose schemas the core objects must satisfy: the oldest still supported
# upstream that has everything used (native gRPC probes GA 1.27, PDB unhealthyPodEvictionPolicy
# GA 1.31).
KUBERNETES = "1.31.0"
# Options the manifests pass that land with other parts of this work; the test accepts them
# while `onyx serve` does not know them yet. Once it does, they are checked like the others.
PENDING: dict[str, str] = {}  # flag -> why a manifest may name it before `onyx serve` has it
SLACK_S = 3  # between the server's own drain deadline and the kubelet's SIGKILL


def validate(obj: Manifest) -> None:
    """Core objects against Kubernetes' schemas; custom resources against crd_fields."""
    schema = BY_KIND.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


def test_overlay_builds_and_validates(overlay: tuple[str, list[Manifest]]) -> None:
    name, objects = overlay
    kinds = sorted(o["kind"] for o in objects)
    scaler = "ScaledObject" if name == "keda" else "HorizontalPodAutoscaler"
    expected = ["Namespace", "Service", "Service", "PersistentVolumeClaim", "Deployment",
                "PodDisruptionBudget", scaler, "ServiceMonitor"]  # fmt: skip
    assert kinds == sorted(expected)
    for obj in objects:
        validate(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "onyx", obj["kind"]


def test_model_sync_component_replaces_the_volume(tmp_path: Path) -> None:
    # kustomize takes relative paths only.
    base = os.path.relpath(K8S / "base", tmp_path)
    sync = os.path.relpath(K8S / "components" / "model-sync", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{sync}]\n"
    )
    objects = kustomize(tmp_path)
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (sync,) = pod["initContainers"]
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert "emptyDir" in models and "persistentVolumeClaim" not in models
    assert {"name": "models", "mountPath": "/models"} in sync["volumeMounts"]
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize(
    ("path", "mutate"),
    [
        ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].update(
            readinesProbe={})),  # misspelt
        ("Deployment", lambda o: o["spec"].update(replicas="two")),
        ("HorizontalPodAutoscaler", lambda o: o["spec"].update(minReplica=1)),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(intervall="15s")),
        ("ServiceMonitor", lambda o: o["spec"].update(endpoints="metrics")),
    ],
)  # fmt: skip
def test_validation_catches_mistakes(path: str, mutate: Any) -> None:
    objects = kustomize(K8S / "overlays" / "cpu")
    broken = copy.deepcopy(one(objects, path))
    mutate(broken)
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate(broken)


def test_crd_field_schemas_catch_mistakes() -> None:
    runtime = one(load(DEPLOY / "kserve" / "servingruntime.yaml"), "ServingRuntime")
    validate(runtime)
    for mutate in (
        lambda o: o["spec"].update(protocolVersion=["v2"]),  # the field is protocolVersions
        lambda o: o["spec"].update(protocolVersions=["v3"]),
        lambda o: o["spec"]["containers"][0]["ports"][0].update(containerPort="8081"),
    ):
        broken = copy.deepcopy(runtime)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


def _serve_args(container: Manifest) -> dict[str, str]:
    """The container's `onyx serve` flags (all given as --flag=value), checked by the real
    command-line parser; returns flag -> value."""
    args = container["args"]
    assert args[0] == "serve", args
    flags = dict(arg.split("=", 1) for arg in args[1:])
    assert len(flags) == len(args) - 1, "give every flag as --flag=value"
    known = {opt for param in serve_command.params for opt in param.opts}
    checked = [f"{k}={v}" for k, v in flags.items() if k in known or k not in PENDING]
    try:
        serve_command.make_context("serve", checked)
    except click.UsageError as exc:
        pytest.fail(f"onyx serve refuses the manifest's arguments: {exc.format_message()}")
    return flags


def _deployment_container(objects: list[Manifest]) -> tuple[Manifest, Manifest]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "onyx"]
    return pod, container


def test_deployment_agrees_with_onyx_serve(overlay: tuple[str, list[Manifest]]) -> None:
    name, objects = overlay
    pod, container = _deployment_container(objects)
    flags = _serve_args(container)
    grpc_port = int(flags["--port"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "http": int(flags["--http-port"]),
                     "metrics": int(flags["--metrics-port"])}  # fmt: skip
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    # Readiness is the overall health entry (strict readiness); liveness never depends on models.
    assert "service" not in container["readinessProbe"]["grpc"]
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    drain_s = float(flags["--drain-delay"]) + float(flags["--grace"])
    assert pod["terminationGracePeriodSeconds"] >= drain_s + SLACK_S
    # The readiness probe notices NOT_SERVING well within the drain delay.
    readiness = container["readinessProbe"]
    noticed_s = readiness["periodSeconds"] * readiness["failureThreshold"]
    assert noticed_s < float(flags["--drain-delay"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    device = "cuda" if name == "gpu" else "cpu"
    assert flags["--device"] == device
    limits = container["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (name == "gpu")


def test_services_reach_the_container_ports(overlay: tuple[str, list[Manifest]]) -> None:
    _, objects = overlay
    _, container = _deployment_container(objects)
    names = {p["name"] for p in container["ports"]}
    for service in (o for o in objects if o["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)
            if port["name"] == "grpc":
                assert port["appProtocol"] == "kubernetes.io/h2c"
    monitor = one(objects, "ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics"}


def test_pdb_and_autoscaler_target_the_deployment(overlay: tuple[str, list[Manifest]]) -> None:
    name, objects = overlay
    deployment = one(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    scaler = one(objects, "ScaledObject" if name == "keda" else "HorizontalPodAutoscaler")
    target = scaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_kserve_runtime_and_inference_service_agree() -> None:
    runtime = one(load(DEPLOY / "kserve" / "servingruntime.yaml"), "ServingRuntime")
    isvc = one(load(DEPLOY / "kserve" / "inferenceservice.yaml"), "InferenceService")
    validate(runtime)
    validate(isvc)
    (container,) = runtime["spec"]["containers"]
    flags = _serve_args(container)
    (port,) = container["ports"]
    assert port == {"name": "h2c", "containerPort": int(flags["--port"]), "protocol": "TCP"}
    assert flags["--repository"] == "/mnt/models"  # where KServe's storage initializer writes
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = {(f["name"], f["version"]) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats
    assert model["ports"] == container["ports"]
