"""Issue 35's red-team attacks that were not refused, now against the real Redis, the real CLI and a real uvicorn
serving the review app (`make attacks` runs these with the rest of the attack suite; docs/security.md keeps the
table): a stranger's wrong logins lock nobody out of tripping the halt; an approval given before its account was
disabled does not complete a clear; X-Forwarded-For is believed from configured proxies only."""

from __future__ import annotations

import contextlib
import io
import threading
import urllib.request

import pytest
import redis
from fastapi.testclient import TestClient

from review.access import LOGIN_ATTEMPTS_PER_ACCOUNT, AccessAudit
from review.app import create_app
from review.commands import server_options
from review.users import UserStore
from safety_gate.halt import HaltStore
from tests.integration.test_review_app import login
from vigil.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.attack]

LEAD = ("ana", "ana password 1234")
ENGINEER = ("omar", "omar password 123")


@pytest.fixture
def accounts(settings, monkeypatch):
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(client, settings.redis_prefix)
    users.add(LEAD[0], "clinical_lead", LEAD[1])
    users.add(ENGINEER[0], "oncall_engineer", ENGINEER[1])
    store = HaltStore(client, settings.redis_prefix)
    store.init(by="dr.lead")
    for name, value in (("VIGIL_REDIS_URL", settings.redis_url.get_secret_value()),
                        ("VIGIL_REDIS_PREFIX", settings.redis_prefix),
                        ("VIGIL_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                        ("VIGIL_TOPIC_INCIDENTS", settings.topic_incidents)):
        monkeypatch.setenv(name, value)

    def halt(command: str, who: tuple[str, str], *extra: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(who[1] + "\n"))
        return main(["halt", command, "--by", who[0], "--reason", "attack test", "--password-stdin", *extra])

    yield client, store, users, halt
    client.close()


def test_a_strangers_wrong_logins_lock_nobody_out_of_tripping_the_halt(settings, accounts):
    """Defect 8: five wrong logins in the web app (no account needed) locked the lead's `vigil halt trip`."""
    client, store, _, halt = accounts
    app = create_app(settings, secret="test-secret", consume=False)
    stranger = TestClient(app, client=("203.0.113.7", 40000))
    codes = [login(stranger, LEAD[0], "wrong password!!").status_code for _ in range(LOGIN_ATTEMPTS_PER_ACCOUNT + 2)]
    assert codes.count(401) == LOGIN_ATTEMPTS_PER_ACCOUNT and codes[-1] == 429  # the stranger is locked out
    assert halt("trip", LEAD) == 0 and store.read().halted  # the lead trips at once
    # and logs in from her own address (slowed by the failures at her name, not refused)
    assert login(TestClient(app, client=("10.1.1.1", 40000)), *LEAD).status_code == 303
    # a wrong password still does not trip: the throttle is skipped for a trip, the password check is not
    store.trip(by="evaluator", reason="x")
    assert halt("trip", (LEAD[0], "not her password")) != 0
    assert "halt.trip_refused" in [e["action"] for e in AccessAudit(client, settings.redis_prefix).entries()]


def test_an_approval_whose_account_was_disabled_since_does_not_complete_a_clear(settings, accounts):
    """Defect 9: approvals were checked when given, not when the clear completed."""
    _, store, users, halt = accounts
    store.trip(by="evaluator", reason="recall 0.86 < 0.90")
    version = store.read().version
    assert halt("clear", LEAD) == 0 and "clinical_lead" in store.approvals(version)
    users.disable(LEAD[0])  # she left, or her account was taken over: her approval no longer counts
    assert halt("clear", ENGINEER) == 0
    assert store.read().halted and set(store.approvals(version)) == {"oncall_engineer"}
    void = [a for a in store.audit() if a["action"] == "halt.approval_void"]
    assert void and void[-1]["who"] == LEAD[0]
    # a new lead's approval completes it
    users.add("cleo", "clinical_lead", "cleo password 12")
    assert halt("clear", ("cleo", "cleo password 12")) == 0 and not store.read().halted


def _serve(app, settings):
    import uvicorn

    from demo.local import free_port, wait_for_port

    port = free_port()
    proxy_headers, allow = server_options(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=proxy_headers, forwarded_allow_ips=allow))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for_port(port, timeout_s=20)
    return server, thread, port


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_x_forwarded_for_is_believed_from_configured_proxies_only(settings, accounts, trusted):
    """Defect 9: uvicorn trusted X-Forwarded-For from 127.0.0.1 by default, so anyone on the host chose the address
    the login throttle and the access audit saw."""
    client, _, _, _ = accounts
    s = settings.model_copy(update={"review_trusted_proxies": trusted})
    server, thread, port = _serve(create_app(s, secret="test-secret", consume=False), s)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/login", data=b"username=nobody&password=x",
                                         headers={"X-Forwarded-For": "198.51.100.9"}, method="POST")
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=5)
        failed = [e for e in AccessAudit(client, s.redis_prefix).entries() if e["action"] == "login.failed"]
        assert failed[-1]["origin"] == ("198.51.100.9" if trusted else "127.0.0.1")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
