"""Redis ACL users per role (`vigil redis acl`) against a real Redis 7 server (valkey): each role can do its
work and nothing it should not. Issue 20: every service shared one password with every key."""

from __future__ import annotations

import pytest
import redis

from demo.local import LocalRedis
from safety_gate import Gate, HaltStore, Heartbeat
from safety_gate.handoff import HandoffStore
from tests.helpers import chat_events, publish, run_scorer, wait_until
from vigil.redis_acl import ROLES, acl_lines
from vigil_core.keys import family_of

PREFIX = "vigil:"
PASSWORDS = {role: f"{role}-password-for-tests" for role in ROLES}


@pytest.fixture
def acl_redis(tmp_path):
    server = LocalRedis(log_dir=tmp_path)
    server.start()
    setup = redis.Redis(port=server.port)
    for line in acl_lines(PREFIX, PASSWORDS)[1:]:  # the default user stays on to set the rest up
        setup.execute_command("ACL", "SETUSER", *line.split()[1:])
    yield server
    server.stop()


def _as(server: LocalRedis, role: str) -> redis.Redis:
    return redis.Redis(port=server.port, username=f"vigil-{role}", password=PASSWORDS[role])


def _url(server: LocalRedis, role: str) -> str:
    return f"redis://vigil-{role}:{PASSWORDS[role]}@127.0.0.1:{server.port}/0"


def test_the_gate_reads_the_halt_but_cannot_write_or_fake_a_change(acl_redis):
    from vigil_core.errors import StoreUnavailable

    HaltStore(_as(acl_redis, "admin"), PREFIX).init(by="dr.lead")
    Heartbeat(_as(acl_redis, "scorer"), PREFIX, "scorer", 30.0).beat()
    gate_client = _as(acl_redis, "gate")
    with Gate.from_url(_url(acl_redis, "gate"), prefix=PREFIX, staleness_s=2.0, poll_s=0.1,
                       require_heartbeat=False) as gate:
        assert wait_until(lambda: gate.check().allowed)  # it works under its user
    for attempt in (lambda: gate_client.hset(f"{PREFIX}halt", "state", "RUNNING"),
                    lambda: gate_client.delete(f"{PREFIX}halt"),
                    lambda: gate_client.publish(f"{PREFIX}halt:changes", '{"state": "RUNNING"}'),
                    lambda: gate_client.get(f"{PREFIX}users:dr.lead"),
                    lambda: HaltStore(gate_client, PREFIX).trip(by="gate", reason="x"),
                    lambda: HandoffStore(gate_client, PREFIX).end("c-risk", by="gate", reason="x")):
        with pytest.raises((redis.exceptions.RedisError, StoreUnavailable), match="(?i)noperm|no permissions"):
            attempt()


def test_the_scorer_works_under_its_user_and_cannot_trip_or_clear(acl_redis, settings, resilient, model_cache):
    from pydantic import SecretStr

    from kafka_io import ensure_topics
    from vigil_core.errors import StoreUnavailable

    admin = HaltStore(_as(acl_redis, "admin"), PREFIX)
    admin.init(by="dr.lead")
    version = admin.trip(by="evaluator", reason="recall 0.86 < 0.90")
    s = settings.model_copy(update={"redis_url": SecretStr(_url(acl_redis, "scorer")), "redis_prefix": PREFIX,
                                    "cache_dir": model_cache})
    ensure_topics(s)
    publish(s, chat_events(4, turns=2))
    run_scorer(s, resilient, max_idle_s=3.0)  # scores, stores conversation state and heartbeats: no NOPERM
    assert _as(acl_redis, "admin").exists(f"{PREFIX}pred:c00000")
    scorer = HaltStore(_as(acl_redis, "scorer"), PREFIX)
    assert scorer.read().halted  # it may read the halt
    for approve in (("ana", "clinical_lead"), ("omar", "oncall_engineer")):
        with pytest.raises(StoreUnavailable):
            scorer.approve_clear(by=approve[0], role=approve[1], reason="forged", version=version)
    with pytest.raises(redis.exceptions.RedisError, match="(?i)noperm|no permissions"):
        _as(acl_redis, "scorer").hset(f"{PREFIX}halt", "state", "RUNNING")
    assert admin.read().halted and admin.approvals(version) == {}


def test_the_evaluator_may_trip_but_its_clear_fails(acl_redis):
    from vigil_core.errors import StoreUnavailable

    HaltStore(_as(acl_redis, "admin"), PREFIX).init(by="dr.lead")
    evaluator = HaltStore(_as(acl_redis, "evaluator"), PREFIX)
    version = evaluator.trip(by="evaluator", reason="recall 0.86 < 0.90")  # automation may trip
    with pytest.raises(StoreUnavailable):
        evaluator.approve_clear(by="ana", role="clinical_lead", reason="forged", version=version)
    assert evaluator.read().halted


def test_the_printed_acl_file_names_every_role_and_turns_the_default_user_off(capsys, monkeypatch):
    from vigil.cli import main

    for role in ROLES:
        monkeypatch.setenv(f"VIGIL_REDIS_PASSWORD_{role.upper()}", PASSWORDS[role])
    assert main(["redis", "acl", "--prefix", "p1:"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user default off"
    assert {line.split()[1] for line in lines[1:]} == {f"vigil-{r}" for r in ROLES}
    assert all("p1:" in line for line in lines[1:] if "vigil-admin" not in line)
    assert not any(PASSWORDS[r] in line for r in ROLES for line in lines)  # hashes, never the passwords


def test_every_service_does_its_whole_work_under_its_own_user(acl_redis, settings, resilient, model_cache):
    """The scorer scores, the evaluator (with its safety actions) sees missed imminent crises, trips the halt and
    opens the P0, and the review app queues, labels and lets two people clear it: each under its own ACL user,
    so a NOPERM anywhere fails the test. Compose runs them this way (docker-compose.yml)."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from evaluators.evaluator import Evaluator
    from incidents.recall_actions import ActionEngine
    from incidents.service import IncidentService
    from incidents.store import IncidentStore
    from kafka_io import OutRecord, RecordProducer, ensure_topics
    from review.app import create_app
    from review.queue import ReviewQueue
    from review.users import UserStore
    from tests.integration.test_review_app import csrf_of, login, request_for
    from vigil.evaluate import run_evaluator
    from vigil_core.clock import utcnow
    from vigil_core.contracts import ClinicianLabel
    from vigil_core.label_signing import LabelSigner

    def as_role(role: str):
        return settings.model_copy(update={"redis_url": SecretStr(_url(acl_redis, role)), "redis_prefix": PREFIX,
                                           "cache_dir": model_cache,
                                           "pagerduty_webhook_secrets": SecretStr("pd-secret-for-tests")})

    admin = _as(acl_redis, "admin")
    users = UserStore(admin, PREFIX)
    for name, role in (("rita", "reviewer"), ("cleo", "clinical_lead"), ("omar", "oncall_engineer")):
        users.add(name, role, "correct horse battery")
    HaltStore(admin, PREFIX).init(by="cleo")

    scorer = as_role("scorer")
    ensure_topics(scorer)
    publish(scorer, chat_events(12, turns=2, crisis_every=4))
    run_scorer(scorer, resilient, max_idle_s=3.0)

    signer = LabelSigner.from_settings(settings)
    labels = [signer.sign(ClinicianLabel(label_id=f"l{i}", conversation_id=f"c{i:05d}", level="imminent",
                                         reviewer_id="rita", confidence=0.9, ts=utcnow())) for i in range(4)]
    producer = RecordProducer(settings)
    producer.send_all([OutRecord(settings.topic_labels, lab.conversation_id, lab.to_bytes()) for lab in labels])
    producer.close()

    ev = as_role("evaluator")
    ev_client = redis.Redis.from_url(ev.redis_url.get_secret_value())
    actions = ActionEngine(ev, IncidentService(ev, ev_client), ev_client)
    run_evaluator(Evaluator(ev, on_alert=actions.handle, open_incidents=IncidentStore(ev_client, PREFIX).open_counts),
                  max_idle_s=3.0)
    # the missed imminent crises opened their P0s, under the evaluator's user
    assert any(i.severity == "P0" for i in IncidentStore(admin, PREFIX).list(only_open=True))
    actions.handle({"rule": "crisis_recall", "state": "CRITICAL", "value": 0.86, "lower": 0.8, "upper": 0.9,
                    "n": 200.0})  # the recall rule's transition, as the evaluator hands it over
    halt = HaltStore(admin, PREFIX)
    assert halt.read().halted

    rv = as_role("review")
    rv_client = redis.Redis.from_url(rv.redis_url.get_secret_value())
    ReviewQueue(rv_client, PREFIX).add(request_for("c00001"))
    app = create_app(rv, secret="test-secret", consume=False)
    with TestClient(app) as client:
        assert login(client, "rita").status_code == 303
        assert client.get("/queue").status_code == 200
    version = halt.read().version
    for name in ("cleo", "omar"):
        with TestClient(app) as client:
            login(client, name)
            client.post("/halt/approve", data={"reason": "model rolled back", "version": version,
                                               "csrf": csrf_of(client)})
    assert not halt.read().halted  # the two-person clear works under the review app's user
    # the model lifecycle: people change the live-model record (the CLI runs as admin), the scorer reads it and
    # writes a shadow's scores, the review app shows the comparison and rolls back from the halt's P0
    from vigil_core.model_record import ModelRecord, ShadowStore

    ModelRecord(admin, PREFIX).promote("v-candidate", by="cleo", reason="compared")
    ModelRecord(admin, PREFIX).set_shadow("v-next", 1.0, by="cleo", reason="evaluate")
    assert ModelRecord(_as(acl_redis, "scorer"), PREFIX).read().champion == "v-candidate"
    ShadowStore(_as(acl_redis, "scorer"), PREFIX, 3600).write("v-next", 0.5, [("c00001", 0, 0.9, True)])
    p0 = next(i for i in IncidentStore(admin, PREFIX).list(only_open=True) if i.severity == "P0" and i.tripped_halt)
    with TestClient(app) as client:
        login(client, "omar")
        assert "v-next" in client.get("/").text
        assert "Roll back the crisis model to default" in client.get("/incidents").text
        client.post("/model/rollback", data={"reason": "recall collapse", "incident_id": p0.id,
                                             "csrf": csrf_of(client, "/incidents")})
    assert ModelRecord(admin, PREFIX).read().champion == "default"
    assert any("rolled back" in str(e.get("detail", {}).get("text", ""))
               for e in IncidentStore(admin, PREFIX).get(p0.id).timeline)
    # a person at risk: the scorer's user hands the conversation off, the review app's user ends it
    assert HandoffStore(_as(acl_redis, "scorer"), PREFIX).start("c00001", by="vigil-scorer", reason="urgent")
    with TestClient(app) as client:
        login(client, "cleo")
        token = csrf_of(client, "/conversations/c00001")
        client.post("/conversations/c00001/outcome", data={"outcome": "contacted", "csrf": token})
        client.post("/conversations/c00001/handoff/end", data={"reason": "safe", "csrf": token})
    assert HandoffStore(admin, PREFIX).get("c00001") is None
    # PagerDuty's acknowledgement of the P0 reaches Vigil through the review app, under its user (its ACL had no
    # key for the webhook's event ids: every webhook failed with NOPERM before vigil_core.keys named them)
    _deliver_acknowledgement(app, rv, p0)
    assert IncidentStore(admin, PREFIX).get(p0.id).state == "acknowledged"
    # every key the services wrote belongs to a family of vigil_core.keys: the ACLs and docs/contracts.md know it
    strays = {k.decode()[len(PREFIX):] for k in admin.scan_iter(match=f"{PREFIX}*")} - {""}
    assert strays and {k for k in strays if family_of(k) is None} == set()


def _deliver_acknowledgement(app, settings, incident) -> None:
    import hashlib
    import hmac
    import json

    from fastapi.testclient import TestClient

    body = json.dumps({"event": {"id": "pd-ev-1", "event_type": "incident.acknowledged", "resource_type": "incident",
                                 "agent": {"summary": "Omar Q"}, "data": {"incident_key": incident.dedup_key}}})
    secret = settings.pagerduty_webhook_secrets.get_secret_value().split(",")[0].strip()
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    with TestClient(app) as http:
        answer = http.post("/webhooks/pagerduty", content=body, headers={
            "X-PagerDuty-Signature": f"v1={signature}", "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
