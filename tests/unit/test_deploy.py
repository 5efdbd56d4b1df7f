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
        if name not in ("topics", "kafka-setup", "redis-acl"):  # one-shot jobs
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
    assert "--appendonly yes" in redis_cmd and "--aclfile /acl/users.acl" in redis_cmd
    assert SERVICES["topics"]["command"] == ["topics", "create"]


def test_every_vigil_environment_variable_in_compose_is_a_known_setting():
    known = {f"VIGIL_{name.upper()}" for name in Settings.model_fields}
    for name, svc in SERVICES.items():
        for var in (svc.get("environment") or {}):
            if var.startswith("VIGIL_") and not var.startswith(("VIGIL_REDIS_PASSWORD_", "VIGIL_KAFKA_PASSWORD_")):
                assert var in known, f"{name}: {var} is not a Settings field"


def test_no_secret_is_written_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${KAFKA_ADMIN_PASSWORD:?" in text and "${GRAFANA_ADMIN_PASSWORD:?" in text
    assert "${VIGIL_REDIS_PASSWORD_ADMIN:?" in text and "${VIGIL_KAFKA_PASSWORD_SCORER:?" in text
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
    opened = {f"{name}:{_metrics_port(SERVICES[name]['command'])}" for name in (*VIGIL, "review")}
    assert targets == opened
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml", "/etc/prometheus/blindspots.yml"]


def test_alertmanager_inhibits_warning_by_critical_and_holds_placeholders_only():
    am = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    assert any(r["source_matchers"] == ['severity="critical"'] and r["target_matchers"] == ['severity="warning"']
               for r in am["inhibit_rules"])
    receivers = {r["name"]: r for r in am["receivers"]}
    assert receivers["pagerduty-safety"]["pagerduty_configs"][0]["routing_key"].startswith("<")
    assert receivers["slack-safety"]["slack_configs"][0]["api_url"].startswith("<")


def _exported_metric_names() -> set[str]:
    """Names as Prometheus sees them, collected from the registries the services really serve."""
    from incidents.outbox import OutboxCollector
    from review.outcomes import QueueCollector, ReviewMetrics

    class Empty:
        def pending(self, *_: object) -> list[object]:
            return []

    registries = [ScorerMetrics().registry, EvaluatorMetrics().registry, ReviewMetrics().registry]
    registries[2].register(QueueCollector(Empty()))
    registries[1].register(OutboxCollector(Empty()))  # type: ignore[arg-type]
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
                   "response time", "error rate", "satisfaction", "incidents", "referral rate",
                   "flag to human contact", "review queue", "per partition", "dead letters", "model version",
                   "outbox"):
        assert needle in titles, needle
    assert dash["templating"]["list"][0]["type"] == "datasource"  # one dashboard for every Prometheus
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"] if p["type"] != "row")


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
    assert published["kafka"] == ["127.0.0.1:29092:29092"]  # the host listener, on this host's loopback only
    for name, ports in published.items():
        if name not in ("gate", "review"):
            assert all(str(p).startswith("127.0.0.1:") for p in ports), (name, ports)


def test_each_vigil_service_logs_in_to_kafka_and_redis_as_its_own_user():
    """Issue 20: every service shared one Redis password, and Kafka took any client without authentication."""
    kafka = SERVICES["kafka"]["environment"]
    assert kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == (
        "CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT,HOST:SASL_PLAINTEXT")
    assert "CONTROLLER://localhost:" in kafka["KAFKA_LISTENERS"]  # the PLAINTEXT listener faces nobody else
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert "SCRAM-SHA-512" in kafka["KAFKA_SASL_ENABLED_MECHANISMS"]
    for name in ("scorer", "evaluator", "review"):
        env = SERVICES[name]["environment"]
        assert env["VIGIL_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["VIGIL_KAFKA_USERNAME"] == f"vigil-{name}"
        assert f"VIGIL_KAFKA_PASSWORD_{name.upper()}" in env["VIGIL_KAFKA_PASSWORD"]
    for name in ("scorer", "evaluator", "review", "gate"):
        assert SERVICES[name]["environment"]["VIGIL_REDIS_URL"].startswith(f"redis://vigil-{name}:"), name
    assert SERVICES["redis"]["depends_on"]["redis-acl"] == {"condition": "service_completed_successfully"}
    assert "vigil redis acl" in " ".join(SERVICES["redis-acl"]["entrypoint"])
    assert SERVICES["topics"]["depends_on"]["kafka-setup"] == {"condition": "service_completed_successfully"}


def test_the_kafka_setup_script_is_what_vigil_kafka_acl_prints_and_parses(capsys):
    from vigil.cli import main

    assert main(["kafka", "acl"]) == 0
    assert (ROOT / "deploy/kafka/setup-users.sh").read_text() == capsys.readouterr().out
    assert subprocess.run(["sh", "-n", str(ROOT / "deploy/kafka/setup-users.sh")]).returncode == 0


def test_only_the_review_app_writes_labels_and_only_the_chat_backend_writes_events():
    from vigil.kafka_acl import kafka_users

    s = Settings()
    writers = {topic: {u.name for u in kafka_users(s) if topic in u.writes}
               for topic in (s.topic_labels, s.topic_events, s.topic_scores, s.topic_review)}
    assert writers == {s.topic_labels: {"vigil-review"}, s.topic_events: {"vigil-chat"},
                       s.topic_scores: {"vigil-scorer"}, s.topic_review: {"vigil-scorer"}}
    script = (ROOT / "deploy/kafka/setup-users.sh").read_text()
    assert "password=" not in script.replace("password=${", "").replace('password="${KAFKA_ADMIN', "")


def _rules() -> dict[str, dict]:
    out = {}
    for name in ("alerts.yml", "blindspots.yml"):
        for group in yaml.safe_load((ROOT / "deploy" / "prometheus" / name).read_text())["groups"]:
            out.update({rule["alert"]: rule for rule in group["rules"]})
    return out


def test_promtool_checks_and_unit_tests_the_blind_spot_rules():
    check = subprocess.run([_promtool(), "check", "rules", "blindspots.yml"], cwd=ROOT / "deploy" / "prometheus",
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([_promtool(), "test", "rules", "blindspots_test.yml"], cwd=ROOT / "deploy" / "prometheus",
                          capture_output=True, text=True)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr
    tested = set(re.findall(r"alertname: (\w+)", (ROOT / "deploy" / "prometheus" / "blindspots_test.yml").read_text()))
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "blindspots.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} <= tested  # every blind-spot rule has a promtool test


def test_every_alert_has_summary_description_and_a_runbook_section():
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", runbook, re.M)}
    for name, rule in _rules().items():
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description"), name
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor in anchors, name


def _route(route: dict, labels: dict[str, str]) -> list[str]:
    """Alertmanager's routing (matchers `a="b"` / `a=~"b|c"`), enough for this config: the receivers an alert
    reaches."""
    def matches(matcher: str) -> bool:
        name, op, value = re.match(r'(\w+)(=~|=)"(.*)"', matcher).groups()
        got = labels.get(name, "")
        return re.fullmatch(value, got) is not None if op == "=~" else got == value

    reached = []
    for child in route.get("routes", []):
        if all(matches(m) for m in child.get("matchers", [])):
            reached.append(child["receiver"])
            if not child.get("continue"):
                return reached
    return reached or [route["receiver"]]


def test_one_condition_one_page():
    """What Vigil's incident engine pages (pager: vigil) never pages again from Alertmanager; the blind spots that
    are critical do."""
    am = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    for name, rule in _rules().items():
        labels = {**rule["labels"], "alertname": name}
        assert labels["pager"] in ("vigil", "prometheus"), name
        receivers = _route(am["route"], labels)
        pages = "pagerduty-safety" in receivers
        assert pages == (labels["pager"] == "prometheus" and labels["severity"] == "critical"), (name, receivers)
    assert _rules()["VigilCrisisRecallCritical"]["labels"]["pager"] == "vigil"  # Vigil's P0 is the one page
    assert _rules()["VigilOutboxStuck"]["labels"] == {"severity": "critical", "pager": "prometheus"}


def test_kafka_advertises_an_address_each_of_its_clients_can_reach():
    """Issue 23: one listener advertised `kafka:9092` on a published port, so a host producer was sent to a name it
    cannot resolve. Each listener now advertises what its own clients reach, and every one authenticates."""
    kafka = SERVICES["kafka"]["environment"]
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised == {"SASL": "kafka:9092", "HOST": "localhost:29092"}
    assert listeners["HOST"] == ":29092" and SERVICES["kafka"]["ports"] == ["127.0.0.1:29092:29092"]
    assert protocols["SASL"] == protocols["HOST"] == "SASL_PLAINTEXT"  # no unauthenticated client listener
    for name in ("SASL", "HOST"):  # both take the admin (PLAIN) and the services (SCRAM)
        assert f"KAFKA_LISTENER_NAME_{name}_PLAIN_SASL_JAAS_CONFIG" in kafka
        assert f"KAFKA_LISTENER_NAME_{name}_SCRAM___SHA___512_SASL_JAAS_CONFIG" in kafka


def test_every_service_restarts_and_its_healthcheck_tests_its_function():
    for name, svc in SERVICES.items():
        assert svc.get("restart") in ("unless-stopped", "on-failure"), name
    for name in ("scorer", "evaluator", "review"):
        test = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert f"vigil health {name}" in test, name  # its work goes through, not only /metrics answering
    assert "/healthz" in " ".join(SERVICES["gate"]["healthcheck"]["test"])
    assert "kafka-topics.sh" in SERVICES["kafka"]["healthcheck"]["test"][1]
