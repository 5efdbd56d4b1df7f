"""The Helm chart (deploy/helm/vigil), rendered with Helm's own Go SDK (helm-python-sdk: no cluster, no helm
binary) and validated against the Kubernetes JSON schemas (kubernetes-validate bundles them); KEDA's objects, which
are custom resources, against their required fields. The sidecar example too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "vigil"
KUBE_VERSION = "1.30.0"
KEDA_SCHEMAS = {
    "ScaledObject": {"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
        "properties": {"scaleTargetRef": {"type": "object", "required": ["name"]},
                       "minReplicaCount": {"type": "integer", "minimum": 0},
                       "maxReplicaCount": {"type": "integer", "minimum": 1},
                       "pollingInterval": {"type": "integer"}, "cooldownPeriod": {"type": "integer"},
                       "triggers": {"type": "array", "minItems": 1, "items": {
                           "type": "object", "required": ["type", "metadata"],
                           "properties": {"type": {"type": "string"},
                                          "metadata": {"type": "object",
                                                       "additionalProperties": {"type": "string"}},
                                          "authenticationRef": {"type": "object", "required": ["name"]}}}}}}}},
    "TriggerAuthentication": {"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object", "properties": {
            "secretTargetRef": {"type": "array", "items": {"type": "object",
                                                           "required": ["parameter", "name", "key"]}},
            "env": {"type": "array", "items": {"type": "object", "required": ["parameter", "name"]}}}}}},
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    try:
        out = chart.render(values or {}, name="prod", namespace="vigil")
    finally:
        chart.close()
    return [doc for text in out.values() for doc in yaml.safe_load_all(text) if doc]


def _validate(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        import jsonschema

        jsonschema.validate(doc, KEDA_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def _by(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


def test_every_rendered_manifest_is_valid_kubernetes():
    docs = render()
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "PodDisruptionBudget", "Ingress", "ScaledObject",
                                          "TriggerAuthentication"}
    for doc in docs:
        _validate(doc)
    broken = {**_by(docs, "Deployment", "-gate"), "spec": {**_by(docs, "Deployment", "-gate")["spec"],
                                                             "replicaz": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)  # the validation does reject what Kubernetes would


def test_the_scorer_scales_on_lag_never_beyond_the_partitions_and_probes_its_function():
    docs = render({"kafka": {"partitions": 4}, "scorer": {"keda": {"minReplicas": 6}}})
    scaled = _by(docs, "ScaledObject", "-scorer")["spec"]
    assert scaled["maxReplicaCount"] == 4 and scaled["minReplicaCount"] == 4  # clamped to the partitions
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == "vigil-scorer"
    assert trigger["metadata"]["topic"] == "conversation.events"
    scorer = _by(docs, "Deployment", "-scorer")
    assert "replicas" not in scorer["spec"]  # KEDA owns the count
    container = scorer["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["vigil", "health", "scorer"]
    assert container["resources"]["requests"]["cpu"] == "2"
    fixed = render({"scorer": {"keda": {"enabled": False}, "replicas": 9}, "kafka": {"partitions": 6}})
    assert _by(fixed, "Deployment", "-scorer")["spec"]["replicas"] == 6
    assert not [d for d in fixed if d["kind"] == "ScaledObject"]


def test_evaluator_is_single_secrets_come_from_secrets_and_the_review_app_is_behind_an_ingress():
    docs = render()
    evaluator = _by(docs, "Deployment", "-evaluator")["spec"]
    assert evaluator["replicas"] == 1 and evaluator["strategy"]["type"] == "Recreate"
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            for name in ("VIGIL_REDIS_URL", "VIGIL_KAFKA_PASSWORD", "VIGIL_LABEL_KEYS", "VIGIL_REVIEW_SECRET"):
                if name in env:
                    assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"]
            assert container["securityContext"]["runAsNonRoot"] is True
            assert container["readinessProbe"] and container["livenessProbe"]
    ingress = _by(docs, "Ingress", "-review")["spec"]
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "prod-vigil-review"
    assert ingress["tls"]
    assert {_by(docs, "PodDisruptionBudget", s)["spec"]["minAvailable"] for s in ("-scorer", "-gate", "-review")} \
        == {1}
    gate = _by(docs, "Deployment", "-gate")["spec"]["template"]["spec"]["containers"][0]
    assert gate["image"].startswith("vigil-gate:") and gate["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_gate_sidecar_example_is_valid_and_gates_over_localhost():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "helm" / "examples" /
                                    "ai-service-with-gate-sidecar.yaml").read_text()))
    for doc in docs:
        _validate(doc)
    containers = {c["name"]: c for c in docs[0]["spec"]["template"]["spec"]["containers"]}
    assert containers["vigil-gate"]["args"][-3:] == ["127.0.0.1", "--port", "8080"]
    assert containers["ai-service"]["env"][0]["value"] == "http://127.0.0.1:8080/v1/gate"
