"""Issue 35, defect 1: a damaged halt record, against a real Redis and the real CLI. Every field of the record is
malformed in turn (types, sizes, huge numbers, the key of another type): the gate stays closed, `vigil halt status`
says what is wrong, `vigil halt init` refuses and explains, a trip writes a fresh HALTED record, and the audited
two-person clear repairs it to RUNNING with versions that stay integers below 2^53."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from review.users import UserStore
from safety_gate import Gate
from safety_gate.halt import HaltStore
from tests.helpers import env_for, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.attack]

PASSWORD = "correct horse battery"
HUGE = "99999999999999999999"

# (what is damaged, how): each applied to a RUNNING record at version 1
DAMAGE = {
    "version-word": lambda r, k: r.hset(k, "version", "x"),
    "version-huge": lambda r, k: r.hset(k, "version", HUGE),
    "version-negative": lambda r, k: r.hset(k, "version", "-1"),
    "version-float": lambda r, k: r.hset(k, "version", "1.5"),
    "version-missing": lambda r, k: r.hdel(k, "version"),
    "state-bogus": lambda r, k: r.hset(k, "state", "BOGUS"),
    "state-empty": lambda r, k: r.hset(k, "state", ""),
    "state-missing": lambda r, k: r.hdel(k, "state"),
    "metrics-not-json": lambda r, k: r.hset(k, "metrics", "{not json"),
    "metrics-number": lambda r, k: r.hset(k, "metrics", "5"),
    "metrics-huge": lambda r, k: r.hset(k, "metrics", json.dumps({"x": "y" * 20_000})),
    "since-garbage": lambda r, k: r.hset(k, "since", "<script>"),
    "reason-1mb": lambda r, k: r.hset(k, "reason", "r" * 1_000_000),
    "by-huge": lambda r, k: r.hset(k, "by", "b" * 10_000),
    "incident-huge": lambda r, k: r.hset(k, "incident_id", "i" * 10_000),
    "key-string": lambda r, k: (r.delete(k), r.set(k, "RUNNING")),
    "key-list": lambda r, k: (r.delete(k), r.rpush(k, "RUNNING")),
    "counter-word-too": lambda r, k: (r.hset(k, "version", "x"), r.set(k + ":version", "x")),
}


def _vigil(settings, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil.cli", "halt", *args], env=env_for(settings),
                          input=password, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_every_damaged_halt_record_stays_closed_is_explained_and_is_repaired_by_the_two_person_clear(settings, name):
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(client, settings.redis_prefix)
    users.add("cleo", "clinical_lead", PASSWORD)
    users.add("omar", "oncall_engineer", PASSWORD)
    store = HaltStore(client, settings.redis_prefix)
    store.init(by="dr.lead")
    DAMAGE[name](client, store.key)
    gate = Gate.from_url(settings.redis_url.get_secret_value(), prefix=settings.redis_prefix, staleness_s=5.0,
                         require_heartbeat=False)
    try:
        # the gate stays closed and says why
        assert wait_until(lambda: not gate.check().allowed, timeout_s=10)
        record = store.read()
        assert record.halted and record.damage and record.version < 2**53
        # status explains (exit 3: halted), init refuses with the way out
        status = _vigil(settings, "status")
        assert status.returncode == 3 and "DAMAGED" in status.stdout and "two-person clear" in status.stdout
        assert "Traceback" not in status.stderr
        init = _vigil(settings, "init", "--by", "cleo", "--reason", "again", "--password-stdin", password=PASSWORD)
        assert init.returncode != 0 and "Traceback" not in init.stderr
        assert "damaged" in init.stderr and "vigil halt clear" in init.stderr
        # the two-person clear repairs it, audited as a repair
        first = _vigil(settings, "clear", "--by", "cleo", "--reason", "record damaged, checked the service",
                       "--password-stdin", password=PASSWORD)
        assert first.returncode in (0, 1) and "still HALTED" in first.stdout, first.stdout + first.stderr
        second = _vigil(settings, "clear", "--by", "omar", "--reason", "agreed, repair", "--password-stdin",
                        password=PASSWORD)
        assert second.returncode in (0, 1) and "lifted" in second.stdout, second.stdout + second.stderr
        repaired = store.read()
        assert repaired.state == "RUNNING" and not repaired.damage and 0 < repaired.version < 2**53
        assert client.type(store.key) == b"hash" and client.hget(store.key, "version").decode().isdigit()
        assert int(client.get(store.version_key)) == repaired.version
        clear = [a for a in store.audit() if a["action"] == "halt.clear"][-1]
        assert clear["repaired"] == "1"
        assert wait_until(lambda: gate.check().allowed, timeout_s=10)
        # and a trip on a damaged record works too: a fresh HALTED record, never a Lua error
        DAMAGE[name](client, store.key)
        version = store.trip(by="evaluator", reason="recall 0.86 < 0.90")
        tripped = store.read()
        assert tripped.state == "HALTED" and not tripped.damage and tripped.version == version < 2**53
    finally:
        gate.close()
        client.close()


def test_the_review_apps_halt_page_reads_a_damaged_record_and_its_clear_repairs_it(settings):
    from fastapi.testclient import TestClient

    from review.app import create_app
    from tests.integration.test_review_app import csrf_of, login

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(client, settings.redis_prefix)
    users.add("cleo", "clinical_lead", PASSWORD)
    users.add("omar", "oncall_engineer", PASSWORD)
    store = HaltStore(client, settings.redis_prefix)
    store.init(by="dr.lead")
    client.hset(store.key, mapping={"version": HUGE, "state": "BOGUS"})
    app = create_app(settings, secret="test-secret", consume=False)
    for name in ("cleo", "omar"):
        with TestClient(app) as web:
            login(web, name, PASSWORD)
            page = web.get("/halt")
            assert page.status_code == 200 and "damaged" in page.text  # it answered 500
            version = store.read().version
            done = web.post("/halt/approve", data={"reason": "repair the damaged record", "version": str(version),
                                                 "csrf": csrf_of(web)}, follow_redirects=False)
            assert done.status_code in (200, 303), done.text
    assert store.read().state == "RUNNING" and not store.read().damage
    client.close()
