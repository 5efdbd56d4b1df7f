"""The halt record and the gate against a real Redis server."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from demo.local import LocalRedis
from safety_gate import (
    ApprovalRefused,
    Gate,
    HaltStore,
    Heartbeat,
    InitRefused,
    NotHalted,
    StaleApproval,
)
from safety_gate.http import make_server
from tests.helpers import read_topic

STALENESS = 0.6


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def prefix(uid):
    return f"g{uid}:"


@pytest.fixture
def client(redis_server):
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


@pytest.fixture
def store(client, prefix):
    return HaltStore(client, prefix)


@pytest.fixture
def beat(client, prefix):
    hb = Heartbeat(client, prefix, "scorer", ttl_s=30)
    hb.beat(partitions={0: 0}, partition_count=1)  # one partition, owned by this live "scorer"
    return hb


@contextlib.contextmanager
def serving(gate: Gate, **kw) -> Iterator[tuple[str, object]]:
    """The HTTP gate over `gate` on a free port, in a thread: (its base URL, the server); shut down after."""
    import threading

    server = make_server(gate, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


def make_gate(url: str, prefix: str, **kw) -> Gate:
    kw.setdefault("staleness_s", STALENESS)
    kw.setdefault("poll_s", 0.1)
    return Gate.from_url(url, prefix=prefix, **kw)


def test_fresh_deployment_is_halted_until_init(redis_server, store, beat, prefix):
    with make_gate(redis_server.url, prefix) as gate:
        first = gate.check()
        assert not first.allowed and "no halt record" in first.reason
        assert store.init(by="dr.lead")
        assert wait_until(lambda: gate.check().allowed)
        assert not store.init(by="someone-else")  # a second init changes nothing
        assert store.read().version == 1


def test_trip_is_seen_by_a_gate_in_another_process_within_100_ms(redis_server, store, beat, prefix):
    store.init(by="dr.lead")
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from safety_gate import Gate
            # a long poll: only the pub/sub message can make this gate see the trip in time
            gate = Gate.from_url({redis_server.url!r}, staleness_s=30, prefix={prefix!r}, poll_s=10)
            assert gate.check().allowed
            print("ready", flush=True)
            while gate.check().allowed:
                pass
            print(time.time(), flush=True)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        tripped_at = time.time()
        store.trip(by="evaluator", reason="recall 0.86 < 0.90", incident_id="INC-7")
        seen_at = float(child.stdout.readline())
        assert seen_at - tripped_at < 0.100
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("loss", ["delete", "flushall"])
def test_losing_the_record_halts_within_staleness_and_stays_halted(redis_server, client, store, prefix, loss):
    store.init(by="dr.lead")
    with make_gate(redis_server.url, prefix, require_heartbeat=False) as gate:
        assert wait_until(lambda: gate.check().allowed)
        lost_at = time.monotonic()
        if loss == "delete":
            client.delete(store.key)
        else:
            client.flushall()
        assert wait_until(lambda: not gate.check().allowed, timeout_s=STALENESS)
        assert time.monotonic() - lost_at <= STALENESS + 0.05
        time.sleep(3 * STALENESS)
        assert not gate.check().allowed
        # back and RUNNING: after a flush a fresh init; after the record alone was deleted, init is refused
        # (it was a one-person clear) and the two-person clear lifts it
        if loss == "flushall":
            store.init(by="dr.lead", reason="restored after loss")
        else:
            with pytest.raises(InitRefused):
                store.init(by="dr.lead", reason="restored after loss")
            version = store.read().version
            assert version == 1 and not store.read().present
            assert not store.approve_clear("dr.lead", "clinical_lead", "record lost; checked", version)
            assert store.approve_clear("eng.oncall", "oncall_engineer", "record lost; checked", version)
            assert store.read().version == 2
        assert wait_until(lambda: gate.check().allowed)


def test_a_deleted_record_and_init_is_no_one_person_clear(store, client):
    """Issue 20: deleting the key and running `vigil halt init` lifted a halt with one person."""
    store.init(by="dr.lead")
    store.trip(by="evaluator", reason="recall 0.86 < 0.90")
    client.delete(store.key)
    with pytest.raises(InitRefused, match="two-person"):
        store.init(by="mallory")
    assert store.read().halted and not store.read().present
    assert any(e["action"] == "halt.init_refused" and e["who"] == "mallory" for e in store.audit())


def test_versions_never_repeat_so_an_old_approval_cannot_complete_a_new_clear(store, client):
    """Issue 20: after the record was lost the version restarted at 1, and a surviving approval of an earlier
    halt with the same number completed the clear of a new one with a single further approval."""
    store.init(by="dr.lead")  # version 1
    old = store.trip(by="evaluator", reason="recall 0.86 < 0.90")  # version 2
    assert not store.approve_clear("dr.lead", "clinical_lead", "reviewed the misses", old)  # one of two, kept 30 d
    client.delete(store.key)  # the record is lost
    new = store.trip(by="evaluator", reason="recall 0.84 < 0.90")  # a new halt
    assert new > old
    assert not store.approve_clear("eng.oncall", "oncall_engineer", "looks fine", new)  # the old one does not count
    assert store.read().halted


def test_stopping_the_redis_server_halts_within_staleness(tmp_path, uid):
    server = LocalRedis(log_dir=tmp_path)
    server.start()
    prefix = f"s{uid}:"
    try:
        HaltStore.from_url(server.url, prefix).init(by="dr.lead")
        with make_gate(server.url, prefix, require_heartbeat=False) as gate:
            assert wait_until(lambda: gate.check().allowed)
            server.kill()
            stopped_at = time.monotonic()
            assert wait_until(lambda: not gate.check().allowed, timeout_s=STALENESS + 0.5)
            assert time.monotonic() - stopped_at <= STALENESS + 0.1
            decision = gate.check()
            assert decision.stale and not decision.allowed
            time.sleep(STALENESS)
            assert not gate.check().allowed
            # the server comes back empty: still halted, the record is missing
            server.start(port=server.port)
            time.sleep(3 * STALENESS)
            assert not gate.check().allowed
            HaltStore.from_url(server.url, prefix).init(by="dr.lead")
            assert wait_until(lambda: gate.check().allowed, timeout_s=5)
    finally:
        server.stop()


def test_a_handed_off_conversation_answers_handoff_while_halted_stale_and_with_redis_killed(tmp_path, uid):
    """Issue 34: a handed-off conversation is the one that most needs to stay handed off; the gate answered it the
    generic fallback whenever it did not answer allowed (halt tripped, heartbeat stale, Redis gone)."""
    from safety_gate.handoff import HandoffStore

    server = LocalRedis(log_dir=tmp_path)
    server.start()
    prefix = f"h{uid}:"
    try:
        client = redis.Redis.from_url(server.url)
        halts = HaltStore.from_url(server.url, prefix)
        halts.init(by="dr.lead")
        hb = Heartbeat(client, prefix, "scorer", ttl_s=30)
        hb.beat(partitions={0: 0}, partition_count=1)
        HandoffStore(client, prefix).start("c-risk", by="scorer", reason="urgent")
        with make_gate(server.url, prefix) as gate, serving(gate) as (base, _):
            assert wait_until(lambda: gate.check().allowed)
            assert gate.check(conversation_id="c-risk").handoff
            # the scorer's heartbeat goes stale (deleted): halted for the rest, handoff for c-risk
            client.delete(f"{prefix}heartbeat:scorer")
            assert wait_until(lambda: "heartbeat" in gate.check().reason)
            assert gate.check(conversation_id="c-risk").handoff
            hb.beat(partitions={0: 0}, partition_count=1)
            assert wait_until(lambda: gate.check().allowed)
            # the halt trips: everyone gets the fallback, the handed-off person still the human team
            halts.trip(reason="crisis recall below 90%", by="evaluator", incident_id="INC-1")
            assert wait_until(lambda: not gate.check().allowed)
            assert gate.check(conversation_id="c-risk").handoff
            assert not gate.check(conversation_id="c-other").handoff
            status, body = _get(base + "/v1/gate?conversation_id=c-risk")
            assert status == 503 and body["handoff"] is True and "joining this conversation" in body["fallback"]
            status, body = _get(base + "/v1/gate?conversation_id=c-other")
            assert status == 503 and body["handoff"] is False
            # Redis is killed: the view goes stale; c-risk answers handoff from the set it last read
            server.kill()
            assert wait_until(lambda: gate.check(conversation_id="c-other").stale, timeout_s=STALENESS + 1)
            assert gate.check(conversation_id="c-risk").handoff
            status, body = _get(base + "/v1/gate?conversation_id=c-risk")
            assert status == 503 and body["handoff"] is True
            status, body = _get(base + "/v1/gate?conversation_id=c-other")
            assert status == 503 and body["handoff"] is False and body["stale"] is True
    finally:
        server.stop()


def test_a_stale_scorer_heartbeat_halts(redis_server, client, store, prefix):
    store.init(by="dr.lead")
    hb = Heartbeat(client, prefix, "scorer", ttl_s=0.3)
    hb.beat(partitions={0: 0}, partition_count=1)
    with make_gate(redis_server.url, prefix) as gate:
        assert wait_until(lambda: gate.check().allowed)
        # no more beats: the key expires
        assert wait_until(lambda: not gate.check().allowed, timeout_s=2)
        assert "heartbeat" in gate.check().reason
        hb.beat(partitions={0: 0}, partition_count=1)
        assert wait_until(lambda: gate.check().allowed)


def test_a_forged_resume_message_does_not_resume(redis_server, client, store, beat, prefix):
    store.init(by="dr.lead")
    store.trip(by="evaluator", reason="recall low")
    with make_gate(redis_server.url, prefix, poll_s=0.05) as gate:
        assert wait_until(lambda: not gate.check().allowed)
        client.publish(store.channel, json.dumps({"state": "RUNNING", "version": 99}))
        time.sleep(0.3)
        assert not gate.check().allowed


def test_one_person_cannot_clear_a_halt_alone(store):
    store.init(by="dr.lead")
    version = store.trip(by="evaluator", reason="recall 0.86")
    assert store.approve_clear(by="ana", role="clinical_lead", reason="model fixed", version=version) is False
    assert store.read().halted
    with pytest.raises(ApprovalRefused):
        store.approve_clear(by="ana", role="oncall_engineer", reason="me again", version=version)
    assert store.read().halted


def test_two_people_with_the_same_role_cannot_clear(store):
    store.init(by="dr.lead")
    version = store.trip(by="evaluator", reason="recall 0.86")
    assert not store.approve_clear(by="ana", role="clinical_lead", reason="ok", version=version)
    assert not store.approve_clear(by="ben", role="clinical_lead", reason="ok too", version=version)
    assert store.read().halted


def test_an_approval_for_an_older_halt_version_does_not_count(store):
    store.init(by="dr.lead")
    v1 = store.trip(by="evaluator", reason="first")
    store.approve_clear(by="ana", role="clinical_lead", reason="ok", version=v1)
    store.approve_clear(by="omar", role="oncall_engineer", reason="ok", version=v1)
    v3 = store.trip(by="evaluator", reason="second")
    assert v3 > v1 + 1
    store.approve_clear(by="ana", role="clinical_lead", reason="ok", version=v3)
    with pytest.raises(StaleApproval):
        store.approve_clear(by="omar", role="oncall_engineer", reason="late", version=v1)
    assert store.read().halted
    assert store.approve_clear(by="omar", role="oncall_engineer", reason="deployed fix", version=v3)
    assert not store.read().halted


def test_clinical_lead_and_oncall_clear_together_and_every_change_is_audited(store):
    store.init(by="dr.lead")
    version = store.trip(by="evaluator", reason="recall 0.86", incident_id="INC-1", metrics={"recall": 0.86},
                         origin="10.0.0.7")
    record = store.read()
    assert record.halted and record.incident_id == "INC-1" and record.metrics == {"recall": 0.86}
    with pytest.raises(ApprovalRefused):
        store.approve_clear(by="x", role="reviewer", reason="no", version=version)
    store.approve_clear(by="ana", role="clinical_lead", reason="new model validated", version=version)
    assert store.approve_clear(by="omar", role="oncall_engineer", reason="rollback done", version=version)
    record = store.read()
    assert not record.halted and record.version == version + 1 and record.by == "ana+omar"
    with pytest.raises(NotHalted):
        store.approve_clear(by="ana", role="clinical_lead", reason="again", version=record.version)
    actions = [(e["action"], e["who"]) for e in store.audit()]
    assert actions == [
        ("halt.init", "dr.lead"), ("halt.trip", "evaluator"), ("halt.approve_clear", "ana"),
        ("halt.approve_clear", "omar"), ("halt.clear", "ana+omar"),
    ]
    trip = store.audit()[1]
    assert trip["reason"] == "recall 0.86" and trip["origin"] == "10.0.0.7" and trip["at"]


def test_cli_halt_commands(redis_server, settings, prefix, monkeypatch, capsys):
    from review.users import UserStore
    from vigil.cli import main

    users = UserStore(redis.Redis.from_url(redis_server.url), prefix)
    users.add("dr.lead", "clinical_lead", "lead password 123")
    users.add("ana", "clinical_lead", "ana password 1234")
    users.add("omar", "oncall_engineer", "omar password 123")
    monkeypatch.setenv("VIGIL_REDIS_URL", redis_server.url)
    monkeypatch.setenv("VIGIL_REDIS_PREFIX", prefix)
    monkeypatch.setenv("VIGIL_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("VIGIL_TOPIC_INCIDENTS", settings.topic_incidents)

    def as_(password: str, *argv: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main([*argv, "--password-stdin"])

    assert main(["halt", "status"]) == 3  # missing record: halted
    assert as_("lead password 123", "halt", "init", "--by", "dr.lead") == 0
    assert main(["halt", "status"]) == 0
    assert as_("omar password 123", "halt", "trip", "--by", "omar", "--reason", "manual test", "--incident",
               "INC-9") == 0
    capsys.readouterr()
    assert main(["halt", "status", "--json"]) == 3
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "HALTED" and status["incident_id"] == "INC-9"
    assert as_("ana password 1234", "halt", "clear", "--by", "ana", "--reason", "ok") == 0
    assert main(["halt", "status"]) == 3
    assert as_("omar password 123", "halt", "clear", "--by", "omar", "--reason", "ok") == 0
    assert main(["halt", "status"]) == 0
    # every manual change is on the incident timeline in Kafka too (INC-9 is unknown here: its own P2)
    events = [json.loads(r.value) for r in read_topic(settings, settings.topic_incidents, settle_s=0.5)]
    texts = [e["detail"].get("text", "") for e in events]
    assert any("initialised" in t for t in texts) and any("tripped by hand" in t for t in texts)
    assert any("lifted" in t for t in texts)


@pytest.fixture
def tripped_for_the_cli(redis_server, settings, prefix, monkeypatch):
    """A tripped halt, the accounts ana (clinical lead), omar (on-call engineer) and rita (reviewer), the CLI
    pointed at them, and `clear(by, password, *extra)`: `vigil halt clear` with that password on stdin."""
    from review.users import UserStore
    from vigil.cli import main

    client = redis.Redis.from_url(redis_server.url)
    UserStore(client, prefix).add("ana", "clinical_lead", "ana password 1234")
    UserStore(client, prefix).add("omar", "oncall_engineer", "omar password 123")
    UserStore(client, prefix).add("rita", "reviewer", "rita password 123")
    store = HaltStore(client, prefix)
    store.init(by="dr.lead")
    store.trip(by="evaluator", reason="recall 0.86 < 0.90")
    monkeypatch.setenv("VIGIL_REDIS_URL", redis_server.url)
    monkeypatch.setenv("VIGIL_REDIS_PREFIX", prefix)
    monkeypatch.setenv("VIGIL_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("VIGIL_TOPIC_INCIDENTS", settings.topic_incidents)

    def clear(by: str, password: str, *extra: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main(["halt", "clear", "--by", by, "--reason", "ok", "--password-stdin", *extra])

    return client, store, clear


@pytest.mark.attack
def test_one_person_cannot_clear_a_halt_from_the_cli(tripped_for_the_cli, prefix):
    """Issue 20: `vigil halt clear --by ana --role clinical_lead` then `--by omar --role oncall_engineer` from one
    terminal lifted a halt: the CLI believed the names and roles it was given."""
    client, store, clear = tripped_for_the_cli
    with pytest.raises(SystemExit):  # the role is the account's: there is no --role to claim one
        clear("ana", "ana password 1234", "--role", "oncall_engineer")
    assert clear("omar", "ana password 1234") != 0  # Ana's password does not make her Omar
    assert clear("rita", "rita password 123") != 0  # a reviewer may not approve a clear
    assert clear("nobody", "whatever password") != 0
    assert store.approvals(store.read().version) == {} and store.read().halted
    clear("ana", "ana password 1234")
    with pytest.raises(ApprovalRefused):  # nor can she approve again in another role
        store.approve_clear(by="ana", role="oncall_engineer", reason="me again", version=store.read().version)
    assert store.read().halted
    from review.access import AccessAudit

    refused = [e for e in AccessAudit(client, prefix).entries() if e["action"] == "halt.clear_refused"]
    assert [e["who"] for e in refused] == ["omar", "rita", "nobody"]


@pytest.mark.attack
def test_a_clear_with_no_terminal_and_no_password_stdin_says_what_to_do(tripped_for_the_cli, monkeypatch, capsys):
    """Issue 35 (defect 9): it ended in an EOFError traceback."""
    from vigil.cli import main

    _, store, _ = tripped_for_the_cli
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["halt", "clear", "--by", "ana", "--reason", "ok"])
    out = capsys.readouterr()
    assert code != 0 and "--password-stdin" in out.err and "Traceback" not in out.err + out.out
    assert store.read().halted


@pytest.mark.attack
def test_guessing_a_leads_password_from_the_cli_is_throttled_with_the_review_apps_logins(
        tripped_for_the_cli, prefix, capsys):
    """The CLI's halt and model commands check a password as the review app's login does, and the same throttle
    counts both: five wrong guesses at an account from this host's CLI lock the CLI out of it, the right password
    included, for the window; the review app is only slowed down for that name (issue 35)."""
    from review.access import LOGIN_ATTEMPTS_PER_ACCOUNT, LOGIN_WINDOW_S, AccessAudit, LoginThrottle

    client, store, clear_as = tripped_for_the_cli

    def clear(password: str) -> int:
        return clear_as("ana", password)

    assert clear("wrong guess 0") != 0
    assert clear("ana password 1234") == 0  # a right password forgives the failures before it
    assert client.get(f"{prefix}review:login:user:ana") is None
    assert all(clear(f"wrong guess {i}") != 0 for i in range(LOGIN_ATTEMPTS_PER_ACCOUNT))
    approvals = store.approvals(store.read().version)
    assert clear("ana password 1234") != 0  # locked: the right password too
    assert "too many failed attempts" in capsys.readouterr().err
    assert store.approvals(store.read().version) == approvals and store.read().halted
    actions = [e["action"] for e in AccessAudit(client, prefix).entries() if e["who"] == "ana"]
    assert actions.count("halt.clear_refused") == 1 + LOGIN_ATTEMPTS_PER_ACCOUNT
    assert actions[-1] == "halt.clear_throttled"
    # one count of the name for the CLI and the review app: her login in the app is slowed, not refused
    assert LoginThrottle.for_logins(client, prefix).attempt("ana", "10.0.0.9") >= 1.0
    assert 0 < client.ttl(f"{prefix}review:login:user:ana") <= LOGIN_WINDOW_S


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_gate_answers_200_when_allowed_and_503_with_the_fallback_when_not(redis_server, store, beat, prefix):
    import threading

    store.init(by="dr.lead")
    gate = make_gate(redis_server.url, prefix)
    server = make_server(gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert wait_until(lambda: _get(base + "/v1/gate")[0] == 200)
        status, body = _get(base + "/v1/gate")
        assert body["allowed"] is True and "fallback" not in body
        store.trip(by="evaluator", reason="recall 0.86", incident_id="INC-3")
        assert wait_until(lambda: _get(base + "/v1/gate")[0] == 503)
        status, body = _get(base + "/v1/gate")
        assert body["allowed"] is False and body["incident_id"] == "INC-3" and "988" in body["fallback"]
        status, health = _get(base + "/healthz")
        assert status == 200 and health["status"] == "ok" and health["refresher_alive"] is True
        assert 0 <= health["view_age_s"] <= STALENESS
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert "vigil_halt_state 1.0" in metrics
        assert 'vigil_gate_decisions_total{outcome="halted"}' in metrics
    finally:
        server.shutdown()
        server.server_close()
        gate.close()


@pytest.mark.attack
def test_a_malformed_halt_record_halts_without_killing_the_refresher(redis_server, client, store, beat, prefix):
    """A malformed `version` (one bad HSET or PUBLISH) used to kill the refresher thread for good."""
    store.init(by="dr.lead")
    with make_gate(redis_server.url, prefix) as gate:
        assert wait_until(lambda: gate.check().allowed)
        client.publish(f"{prefix}halt:changes", json.dumps({"state": "HALTED", "version": "not a number"}))
        assert wait_until(lambda: not gate.check().allowed)
        assert gate.refresher_alive
        client.hset(f"{prefix}halt", "version", "garbage")
        assert wait_until(lambda: "damaged" in gate.check().reason and "garbage" in gate.check().reason)
        assert not gate.check().allowed and gate.refresher_alive
        client.hset(f"{prefix}halt", "version", "1")  # repaired by hand: the same refresher reads it again
        assert wait_until(lambda: gate.check().allowed)


@pytest.mark.attack
def test_unbounded_halt_fields_written_into_redis_never_reach_an_answer_whole(redis_server, client, store, beat,
                                                                             prefix):
    """Issue 35 (defect 2): a 1 MB `reason` was echoed in every gate answer while halted, and `/v1/status` passed a
    raw `since` through. Now such a record is damaged (no Vigil path writes it): halted, saying what is wrong, each
    field bounded."""
    store.init(by="dr.lead")
    store.trip(by="evaluator", reason="recall 0.86 < 0.90", incident_id="INC-1")
    client.hset(f"{prefix}halt", mapping={"reason": "x" * 1_000_000, "since": "<script>not a time</script>",
                                          "incident_id": "I" * 10_000, "by": "b" * 10_000})
    with make_gate(redis_server.url, prefix) as gate, serving(gate) as (base, _):
        assert wait_until(lambda: "damaged" in gate.check().reason)
        status, body = _get(base + "/v1/gate")
        assert status == 503 and len(json.dumps(body)) < 4096 and "reason of 1000000 characters" in body["reason"]
        status, page = _get(base + "/v1/status")
        assert "script" not in json.dumps(page) and "halted" in json.dumps(page)


@pytest.mark.attack
def test_idle_connections_to_the_http_gate_are_closed_and_free_their_threads(redis_server, store, beat, prefix):
    """Issue 35 (defect 9): 500 half-open connections held 500 threads for good."""
    import socket
    import threading

    store.init(by="dr.lead")
    with make_gate(redis_server.url, prefix) as gate, serving(gate, idle_timeout_s=0.5) as (base, server):
        port = server.server_address[1]  # type: ignore[attr-defined]
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
        for sock in idle:
            sock.sendall(b"GET /v1/gate HTTP/1.1\r\n")  # a request begun and never finished
        started = time.monotonic()
        for sock in idle:
            assert sock.recv(1024) == b""  # closed by the server (the socket's own timeout is 5 s)
            sock.close()
        assert time.monotonic() - started < 5
        assert wait_until(lambda: threading.active_count() <= before + 2, timeout_s=5)  # their threads are gone
        assert _get(base + "/v1/gate")[0] == 200  # and the gate still answers


def test_healthz_fails_when_the_refresher_is_gone_so_the_gate_is_restarted(redis_server, store, beat, prefix):
    import threading

    store.init(by="dr.lead")
    gate = make_gate(redis_server.url, prefix)
    server = make_server(gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert wait_until(lambda: _get(base + "/healthz")[0] == 200)
        gate.close()  # the refresher stops, as a thread that died would
        status, health = _get(base + "/healthz")
        assert status == 503 and health["refresher_alive"] is False
        assert _get(base + "/v1/gate")[0] == 503 or wait_until(lambda: _get(base + "/v1/gate")[0] == 503)
    finally:
        server.shutdown()
        server.server_close()


def test_a_wedged_replica_halts_the_gate_although_another_replica_beats(redis_server, client, store, prefix):
    """Every replica refreshed one shared key, so a healthy replica hid a wedged one whose partitions went
    unscored. Now each partition needs a live owner within the lag bound."""
    store.init(by="dr.lead")
    healthy = Heartbeat(client, prefix, "scorer", ttl_s=30)
    wedged = Heartbeat(client, prefix, "scorer", ttl_s=0.3)
    healthy.beat(partitions={0: 0, 1: 3}, partition_count=4)
    wedged.beat(partitions={2: 0, 3: 0}, partition_count=4)
    with make_gate(redis_server.url, prefix, max_partition_lag=1000) as gate:
        assert wait_until(lambda: gate.check().allowed)
        # the wedged replica stops beating; the healthy one goes on
        def halted_while_healthy_beats() -> bool:
            healthy.beat(partitions={0: 0, 1: 3}, partition_count=4)
            return not gate.check().allowed

        assert wait_until(halted_while_healthy_beats, timeout_s=3)
        assert "partition 2" in gate.check().reason
        healthy.beat(partitions={0: 0, 1: 3, 2: 0, 3: 0}, partition_count=4)  # the group gave it 2 and 3
        assert wait_until(lambda: gate.check().allowed)
        healthy.beat(partitions={0: 0, 1: 5000, 2: 0, 3: 0}, partition_count=4)  # alive, but far behind
        assert wait_until(lambda: not gate.check().allowed)
        assert "partition 1 is 5000 events behind" in gate.check().reason


def test_a_handed_off_conversation_gets_the_handoff_and_everyone_else_the_ai(redis_server, client, store, beat,
                                                                            prefix):
    """Issue 22: a person at risk is handed to a human while the AI keeps answering everyone else."""
    import threading

    from safety_gate.handoff import HandoffStore

    store.init(by="dr.lead")
    handoffs = HandoffStore(client, prefix)
    handoffs.start("c-early", by="scorer", reason="urgent")  # before the gate starts: read at its first refresh
    gate = make_gate(redis_server.url, prefix, poll_s=5.0)  # changes must arrive by message, not by the poll
    server = make_server(gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert wait_until(lambda: gate.check().allowed)
        assert gate.check(conversation_id="c-early").handoff
        assert handoffs.start("c-risk", by="scorer", reason="urgent: imminent risk", incident_id="INC-9")
        assert not handoffs.start("c-risk", by="scorer", reason="replayed")  # idempotent: first reason stays
        assert wait_until(lambda: gate.check(conversation_id="c-risk").handoff, timeout_s=1.0)
        decision = gate.check(conversation_id="c-risk")
        assert not decision.allowed and decision.handoff
        assert gate.check(conversation_id="c-other").allowed and gate.check().allowed
        status, body = _get(base + "/v1/gate?conversation_id=c-risk")
        assert status == 503 and body["handoff"] is True and "joining this conversation" in body["fallback"]
        status, body = _get(base + "/v1/gate?conversation_id=c-other")
        assert status == 200 and body["handoff"] is False
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        counted = dict(re.findall(r'vigil_gate_decisions_total\{outcome="(\w+)"\} ([0-9.]+)', metrics))
        assert float(counted["handoff"]) == gate.handoff_count >= 3  # counted apart, never as halted
        assert float(counted["halted"]) == gate.denied_count
        assert "vigil_gate_conversations_handed_off 2.0" in metrics
        assert handoffs.end("c-risk", by="cleo", reason="spoke with the person; safe plan agreed")
        assert wait_until(lambda: gate.check(conversation_id="c-risk").allowed, timeout_s=1.0)
        actions = [(e["action"], e["conversation_id"], e["by"]) for e in handoffs.audit()]
        assert actions[:2] == [("handoff_end", "c-risk", "cleo"), ("handoff_start", "c-risk", "scorer")]
        # a lost message (the gate was away): the counter moved, so the next poll re-reads the whole set
        client.hset(f"{prefix}handoff", "c-silent", "{}")
        client.incr(f"{prefix}handoff:version")
        gate.refresh(client)
        assert gate.check(conversation_id="c-silent").handoff
        # a stale view answers halted for everyone but the conversations it last knew were handed off
        gate.close()
        assert wait_until(lambda: gate.check(conversation_id="c-other").stale, timeout_s=2 * STALENESS + 1)
        assert gate.check(conversation_id="c-early").handoff and not gate.check(conversation_id="c-risk").handoff
    finally:
        server.shutdown()
        server.server_close()
        gate.close()


def test_public_status_in_each_state(redis_server, client, store, beat, prefix):
    """GET /v1/status: operational, then each component degraded or halted in turn, with no internal detail and a
    cache header a status page can use."""
    import threading

    store.init(by="dr.lead")
    evaluator, review = Heartbeat(client, prefix, "evaluator", ttl_s=30), Heartbeat(client, prefix, "review", ttl_s=30)
    evaluator.beat()
    review.beat()
    gate = make_gate(redis_server.url, prefix)
    server = make_server(gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/status"

    def states() -> dict[str, str]:
        return {c["id"]: c["status"] for c in _get(url)[1]["components"]}

    try:
        assert wait_until(lambda: set(states().values()) == {"operational"})
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200 and "max-age" in resp.headers["Cache-Control"]
            body = json.loads(resp.read())
        assert body["status"] == "operational" and [c["name"] for c in body["components"]] == [
            "AI responses", "Crisis monitoring", "Clinical review"]
        # the review app stops beating: clinical review degraded, the AI still answers
        client.delete(review.key)
        assert wait_until(lambda: states() == {"ai_responses": "operational", "crisis_monitoring": "operational",
                                               "clinical_review": "degraded"})
        # the evaluator stops: crisis monitoring degraded (labels wait), not halted
        client.delete(evaluator.key)
        assert wait_until(lambda: states()["crisis_monitoring"] == "degraded")
        assert _get(url)[1]["status"] == "degraded"
        evaluator.beat()
        review.beat()
        assert wait_until(lambda: set(states().values()) == {"operational"})
        # a halt: AI responses halted since the halt's own time; the reason and incident stay private
        store.trip(by="evaluator", reason="recall 0.86 < 0.90", incident_id="INC-SECRET")
        assert wait_until(lambda: states()["ai_responses"] == "halted")
        status, body = _get(url)
        ai = next(c for c in body["components"] if c["id"] == "ai_responses")
        assert body["status"] == "halted" and ai["since"] == store.read().since
        assert "INC-SECRET" not in json.dumps(body) and "recall" not in json.dumps(body)
        # the scorer gone: crisis monitoring halted too
        client.delete(beat.key)
        assert wait_until(lambda: states()["crisis_monitoring"] == "halted")
    finally:
        server.shutdown()
        server.server_close()
        gate.close()


def test_vigil_health_answers_for_this_hosts_process(redis_server, client, prefix, monkeypatch, capsys):
    """The containers' healthcheck (`vigil health COMPONENT`): 0 while a process of it on this host beats."""
    from vigil.cli import main

    monkeypatch.setenv("VIGIL_REDIS_URL", redis_server.url)
    monkeypatch.setenv("VIGIL_REDIS_PREFIX", prefix)
    assert main(["health", "evaluator"]) == 1  # nothing beats yet
    hb = Heartbeat(client, prefix, "evaluator", ttl_s=3.0)
    hb.beat()
    assert main(["health", "evaluator", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["healthy"] is True
    assert main(["health", "scorer"]) == 1  # another component's beat does not count
    time.sleep(3.2)
    assert main(["health", "evaluator"]) == 1  # its TTL passed: the process stopped doing its work
