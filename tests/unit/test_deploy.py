"""docker-compose.yml, Prometheus, Alertmanager and Grafana files (no Docker engine here: parsed, not run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry

from evaluators.evaluator import EvaluatorMetrics
from pipeline.metrics import ScorerMetrics
from safety_gate.gate import Gate
from safety_gate.halt import HaltRecord
from safety_gate.metrics import GateCollector
from tests.helpers import ROOT
from vigil_core.settings import Settings

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VIGIL = ("scorer", "evaluator", "gate")


def test_compose_has_every_service_with_image_command_ports_env_and_health_check():
    assert {"kafka", "redis", "prometheus", "alertmanager", "grafana", "review", *VIGIL} <= set(SERVICES)
    assert SERVICES["review"]["command"][:2] == ["review", "serve"] and "8000:8000" in SERVICES["review"]["ports"]
    for name, svc in SERVICES.items():
        assert svc.get("image") or svc.get("build"), name
        if name != "topics":
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in VIGIL:
        svc = SERVICES[name]
        if name == "gate":  # the small image without torch: the Dockerfile's `gate` target
            assert svc["build"] == {"context": ".", "target": "gate"} and svc["image"] == "vigil-gate:latest"
        else:
            assert svc["build"] == "." and svc["image"] == "vigil:latest"
        assert svc["command"]
        assert svc["environment"]["VIGIL_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert SERVICES["scorer"]["deploy"]["replicas"] == 2
    assert "8080:8080" in SERVICES["gate"]["ports"]
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:") and "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    redis_cmd = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--requirepass" in redis_cmd
    assert SERVICES["topics"]["command"] == ["topics", "create"]


def test_every_vigil_environment_variable_in_compose_is_a_known_setting():
    known = {f"VIGIL_{name.upper()}" for name in Settings.model_fields}
    for name, svc in SERVICES.items():
        for var in (svc.get("environment") or {}):
            if var.startswith("VIGIL_"):
                assert var in known, f"{name}: {var} is not a Settings field"


def test_no_secret_is_written_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${REDIS_PASSWORD:?" in text and "${GRAFANA_ADMIN_PASSWORD:?" in text
    assert not re.search(r"(password|secret|routing_key)\s*[:=]\s*['\"]?[A-Za-z0-9]{8,}", text, re.I)


def _metrics_port(command: list[str]) -> int:
    if "--metrics-port" in command:
        return int(command[command.index("--metrics-port") + 1])
    return int(command[command.index("--port") + 1])


def test_every_prometheus_scrape_target_is_a_metrics_port_a_service_opens():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            targets.update(sc["targets"])
        for dns in job.get("dns_sd_configs", []):
            targets.update(f"{n}:{dns['port']}" for n in dns["names"])
    opened = {f"{name}:{_metrics_port(SERVICES[name]['command'])}" for name in VIGIL}
    assert targets == opened
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_alertmanager_inhibits_warning_by_critical_and_holds_placeholders_only():
    am = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    assert any(r["source_matchers"] == ['severity="critical"'] and r["target_matchers"] == ['severity="warning"']
               for r in am["inhibit_rules"])
    receivers = {r["name"]: r for r in am["receivers"]}
    assert receivers["pagerduty-safety"]["pagerduty_configs"][0]["routing_key"].startswith("<")
    assert receivers["slack-safety"]["slack_configs"][0]["api_url"].startswith("<")


def _exported_metric_names() -> set[str]:
    """Names as Prometheus sees them, collected from the registries the services really serve."""
    registries = [ScorerMetrics().registry, EvaluatorMetrics().registry]
    gate = Gate(lambda: None, start=False)  # type: ignore[arg-type]
    gate._install(HaltRecord(state="RUNNING"), liveness=None, at=0.0)
    gate_registry = CollectorRegistry()
    gate_registry.register(GateCollector(gate))
    registries.append(gate_registry)
    names = set()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            for sample in family.samples:
                names.add(sample.name)
    return names


def test_grafana_dashboard_queries_name_only_metrics_vigil_exports():
    dash = json.loads((ROOT / "deploy" / "grafana" / "vigil.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bvigil_[a-z0-9_]+", e)}
    exported = _exported_metric_names()
    assert used, "the dashboard has no Vigil query"
    assert used <= exported, sorted(used - exported)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for needle in ("crisis recall", "halt", "precision", "label coverage", "agreement", "backup", "lag",
                   "response time", "error rate", "satisfaction", "incidents"):
        assert needle in titles, needle


def test_dockerfile_uses_cpu_torch_bakes_the_model_and_drops_root():
    text = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in text and "whl/cpu" in text
    assert "vigil model export" in text and "USER vigil" in text
    # the gate's own stage installs the gate extra only and copies no model, no services
    gate = text.split("FROM python:3.11-slim AS gate", 1)[1].split("\nFROM ", 1)[0]
    assert "'.[gate]'" in gate and "torch" not in gate
    assert "COPY models" not in gate and "COPY pipeline" not in gate


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: `make tools` installs it")
        pytest.skip("promtool not installed (`make tools` installs it)")
    return path


def test_promtool_checks_the_generated_rules():
    out = subprocess.run([_promtool(), "check", "rules", "deploy/prometheus/alerts.yml"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_prove_each_seed_threshold_fires_at_the_right_value():
    out = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=ROOT / "deploy" / "prometheus",
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_only_the_gate_and_the_review_app_face_other_hosts():
    """Issue 20: Kafka (PLAINTEXT, no authentication) and Redis were published on every interface of the host."""
    published = {name: svc.get("ports", []) for name, svc in SERVICES.items()}
    assert published["kafka"] == []  # its clients join the compose network
    for name, ports in published.items():
        if name not in ("gate", "review"):
            assert all(str(p).startswith("127.0.0.1:") for p in ports), (name, ports)
