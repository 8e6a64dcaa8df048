"""The fields of the custom resources (KServe, KEDA, Prometheus Operator) that deploy/ relies
on, as closed JSON schemas: a misspelt or misplaced field fails, as it would against the CRD.

Written by hand from the CRDs' openAPIV3Schema, and checked against them (every manifest in
deploy/ validated against the full CRD schemas, made closed the same way) at:
- KServe: kserve/kserve config/crd/full/serving.kserve.io_servingruntimes.yaml and
  serving.kserve.io_inferenceservices.yaml, commit aaac4e29 (v0.20.0-rc0 + 104);
- KEDA: kedacore/keda config/crd/bases/keda.sh_scaledobjects.yaml, commit 8b4f083c (v2.20.1 + 117);
- Prometheus Operator: prometheus-operator/prometheus-operator
  example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml, commit 6adcebc5
  (v0.93.0 + 24).
A field used in deploy/ that is missing here makes the test fail: check it in the CRD, then add it.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
QUANTITY: Schema = {"anyOf": [{"type": "integer"}, {"type": "string"}]}  # int-or-string
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """A closed object: only `properties`, `required` ones present."""
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}  # fmt: skip


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


METADATA = obj(("name",), name=STRING, namespace=STRING, labels=STRING_MAP, annotations=STRING_MAP)
RESOURCES = obj(requests={"type": "object", "additionalProperties": QUANTITY},
                limits={"type": "object", "additionalProperties": QUANTITY})  # fmt: skip
CONTAINER_PORT = obj(("containerPort",), name=STRING, containerPort=INTEGER,
                     protocol=enum("TCP", "UDP", "SCTP"))  # fmt: skip
SECURITY_CONTEXT = obj(
    runAsUser=INTEGER, runAsNonRoot=BOOLEAN, allowPrivilegeEscalation=BOOLEAN,
    readOnlyRootFilesystem=BOOLEAN, capabilities=obj(drop=array(STRING), add=array(STRING)),
)  # fmt: skip
# A core Container as KServe embeds it (its CRD carries the full core schema).
CONTAINER = obj(("name",), name=STRING, image=STRING, args=array(STRING), command=array(STRING),
                ports=array(CONTAINER_PORT), resources=RESOURCES,
                securityContext=SECURITY_CONTEXT)  # fmt: skip
SCALE_TARGET = obj(("name",), apiVersion=STRING, kind=STRING, name=STRING)
HPA_POLICY = obj(("type", "value", "periodSeconds"), type=enum("Pods", "Percent"), value=INTEGER,
                 periodSeconds=INTEGER)  # fmt: skip
HPA_RULES = obj(stabilizationWindowSeconds=INTEGER, selectPolicy=enum("Max", "Min", "Disabled"),
                policies=array(HPA_POLICY))  # fmt: skip


def resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return obj(("apiVersion", "kind", "metadata", "spec"), apiVersion={"const": api_version},
               kind={"const": kind}, metadata=METADATA, spec=spec)  # fmt: skip


SERVING_RUNTIME = resource("serving.kserve.io/v1alpha1", "ServingRuntime", obj(
    ("containers",),
    annotations=STRING_MAP,
    supportedModelFormats=array(obj(("name",), name=STRING, version=STRING, autoSelect=BOOLEAN,
                                    priority=INTEGER)),
    protocolVersions=array(enum("v1", "v2", "grpc-v1", "grpc-v2")),
    multiModel=BOOLEAN,
    containers=array(CONTAINER),
))  # fmt: skip

INFERENCE_SERVICE = resource("serving.kserve.io/v1beta1", "InferenceService", obj(
    ("predictor",),
    predictor=obj(
        minReplicas=INTEGER, maxReplicas=INTEGER, serviceAccountName=STRING,
        model=obj(
            ("modelFormat",),
            modelFormat=obj(("name",), name=STRING, version=STRING),
            runtime=STRING,
            protocolVersion=enum("v1", "v2", "grpc-v1", "grpc-v2"),
            storageUri=STRING,
            ports=array(CONTAINER_PORT),
            resources=RESOURCES,
            args=array(STRING),
        ),
    ),
))  # fmt: skip

SCALED_OBJECT = resource("keda.sh/v1alpha1", "ScaledObject", obj(
    ("scaleTargetRef", "triggers"),
    scaleTargetRef=SCALE_TARGET,
    minReplicaCount=INTEGER, maxReplicaCount=INTEGER, pollingInterval=INTEGER,
    cooldownPeriod=INTEGER,
    advanced=obj(horizontalPodAutoscalerConfig=obj(
        behavior=obj(scaleUp=HPA_RULES, scaleDown=HPA_RULES)
    )),
    triggers=array(obj(("type", "metadata"), type=STRING, metricType=enum(
        "AverageValue", "Value", "Utilization"), metadata=STRING_MAP, name=STRING)),
))  # fmt: skip

SERVICE_MONITOR = resource("monitoring.coreos.com/v1", "ServiceMonitor", obj(
    ("selector",),
    selector=obj(
        matchLabels=STRING_MAP,
        matchExpressions=array(obj(("key", "operator"), key=STRING, operator=STRING,
                                   values=array(STRING))),
    ),
    namespaceSelector=obj(matchNames=array(STRING), any=BOOLEAN),
    endpoints=array(obj(port=STRING, path=STRING, interval=STRING, scrapeTimeout=STRING,
                        scheme=enum("http", "https", "HTTP", "HTTPS"))),
))  # fmt: skip

BY_KIND: dict[tuple[str, str], Schema] = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): SERVING_RUNTIME,
    ("serving.kserve.io/v1beta1", "InferenceService"): INFERENCE_SERVICE,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
