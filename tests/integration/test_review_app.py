"""The review app's security and labelling rules, over real HTTP handling, a real Redis and a real broker."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from kafka_io import ensure_topics
from review.app import ROUTERS, create_app
from review.queue import ReviewQueue
from review.users import UserStore
from safety_gate.halt import HaltStore
from tests.helpers import read_topic, values
from vigil_core.clock import utcnow
from vigil_core.contracts import ReviewRequest, ReviewTurn

PASSWORD = "correct horse battery"


@pytest.fixture
def env(settings):
    ensure_topics(settings, [settings.topic_labels, settings.topic_review])
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(r, settings.redis_prefix)
    for name, role in (("rita", "reviewer"), ("rob", "reviewer"), ("cleo", "clinical_lead"),
                       ("omar", "oncall_engineer"), ("ada", "admin")):
        users.add(name, role, PASSWORD)
    queue = ReviewQueue(r, settings.redis_prefix)
    app = create_app(settings, secret="test-secret", consume=False)
    return settings, r, queue, app


def request_for(cid: str, text: str = "I want to die", reason: str = "flagged", score: float = 0.9) -> ReviewRequest:
    now = utcnow()
    return ReviewRequest(review_id=f"{cid}:{reason}", conversation_id=cid, reason=reason, pi=1.0 if reason == "flagged"
                         else 0.1, max_score=score, first_flagged_turn=0 if reason == "flagged" else None,
                         turns=[ReviewTurn(turn=0, role="user", text=text, ts=now, score=score),
                                ReviewTurn(turn=1, role="assistant", text="I'm here with you.", ts=now)],
                         requested_at=now)


def login(client: TestClient, name: str, password: str = PASSWORD):
    return client.post("/login", data={"username": name, "password": password}, follow_redirects=False)


def csrf_of(client: TestClient, path: str = "/halt") -> str:
    page = client.get(path).text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def audit_actions(settings, r) -> list[dict]:
    """The halt history and the access audit, together."""
    from review.access import AccessAudit

    return HaltStore(r, settings.redis_prefix).audit(1000) + AccessAudit(r, settings.redis_prefix).entries(1000)


def test_every_route_refuses_an_anonymous_request(env):
    settings, r, queue, app = env
    queue.add(request_for("c1"))
    client = TestClient(app)
    checked = 0
    # FastAPI keeps an included router as one entry of app.routes: walk the routers the app includes
    for route in [*app.routes, *(r for router in ROUTERS for r in router.routes)]:
        path = getattr(route, "path", "")
        # the login page, the API's login and static files are the only public routes
        if path in ("/login", "/api/v1/session", "/static") or not hasattr(route, "methods"):
            continue
        concrete = path.replace("{cid}", "c1").replace("{incident_id}", "INC-1")
        for method in route.methods - {"HEAD"}:
            resp = client.request(method, concrete, follow_redirects=False, data={"csrf": "x"}
                                  if method == "POST" and not path.startswith("/api/") else None)
            assert resp.status_code in (303, 401), (method, path, resp.status_code)
            if resp.status_code == 303:
                assert resp.headers["location"] == "/login"
            assert "I want to die" not in resp.text
            checked += 1
    assert checked >= 15
    assert any(a["action"] == "access.refused" and a["who"] == "anonymous" for a in audit_actions(settings, r))


def test_session_cookie_is_httponly_strict_and_signed(env):
    _, _, _, app = env
    client = TestClient(app)
    resp = login(client, "rita")
    cookie = resp.headers["set-cookie"].lower()
    assert resp.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/queue", follow_redirects=False).status_code == 200
    # change the signature's first character: its last one carries padding bits a decoder ignores, so a changed
    # last pair can decode to the same signature (1 run in 1,024 did: "...xw" forged as "...xx")
    payload, signature = client.cookies.get("vigil_session").rsplit(".", 1)
    forged = TestClient(app)
    forged.cookies.set("vigil_session", f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}")
    assert forged.get("/queue", follow_redirects=False).status_code == 303


def test_a_form_without_a_csrf_token_is_refused(env):
    settings, r, queue, app = env
    HaltStore(r, settings.redis_prefix).init(by="cleo")
    client = TestClient(app)
    login(client, "cleo")
    assert client.post("/halt/trip", data={"reason": "test"}, follow_redirects=False).status_code == 403
    forged = client.post("/halt/trip", data={"reason": "test", "csrf": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    assert not HaltStore(r, settings.redis_prefix).read().halted
    ok = client.post("/halt/trip", data={"reason": "manual test", "csrf": csrf_of(client)}, follow_redirects=False)
    assert ok.status_code == 303 and HaltStore(r, settings.redis_prefix).read().halted


def test_a_reviewer_cannot_clear_a_halt_or_see_the_audit(env):
    settings, r, queue, app = env
    store = HaltStore(r, settings.redis_prefix)
    store.init(by="cleo")
    version = store.trip(by="evaluator", reason="recall low")
    client = TestClient(app)
    login(client, "rita")
    token = csrf_of(client)
    resp = client.post("/halt/approve", data={"reason": "looks fine", "version": version, "csrf": token},
                       follow_redirects=False)
    assert resp.status_code == 403 and store.approvals(version) == {}
    assert client.get("/audit", follow_redirects=False).status_code == 403
    # a clinical lead and an on-call engineer together can, through the app
    for name in ("cleo", "omar"):
        c = TestClient(app)
        login(c, name)
        c.post("/halt/approve", data={"reason": "fixed", "version": version, "csrf": csrf_of(c)})
    assert not store.read().halted


def test_message_text_is_escaped_and_identifiers_are_redacted(env):
    settings, r, queue, app = env
    queue.add(request_for("c-xss", text="<script>alert('x')</script> mail me at jo@example.com, my name is Jo Park"))
    client = TestClient(app)
    login(client, "rita")
    page = client.get("/conversations/c-xss").text
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "jo@example.com" not in page and "[email]" in page and "Jo Park" not in page


@pytest.mark.attack
def test_the_conversation_shows_and_the_json_api_returns_each_turns_language_and_a_handoff(env):
    """Issue 32: the language of the conversation and of each turn, and a warning where the model is not validated;
    issue 35: the JSON conversation route answered 500 for a conversation with a deadline or a handoff."""
    from safety_gate.handoff import HandoffStore

    settings, r, queue, app = env
    now = utcnow()
    request = ReviewRequest(review_id="c-es:language", conversation_id="c-es", reason="language", pi=0.25,
                            max_score=0.001, turns=[ReviewTurn(turn=0, role="user", text="no sé qué hacer con mi vida",
                                                               ts=now, score=0.001, language="es")],
                            requested_at=now, language="es")
    queue.add(request)
    queue.add(request_for("c-urgent", reason="urgent", score=0.99))
    HandoffStore(r, settings.redis_prefix).start("c-urgent", by="scorer", reason="urgent")
    client = TestClient(app)
    login(client, "rita")
    page = client.get("/conversations/c-es").text
    assert 'id="language"' in page and "not validated for this language" in page and 'lang="es"' in page
    api = client.get("/api/v1/conversations/c-es")
    assert api.status_code == 200 and api.json()["language"] == "es" and api.json()["turns"][0]["language"] == "es"
    urgent = client.get("/api/v1/conversations/c-urgent")
    assert urgent.status_code == 200
    body = urgent.json()
    assert body["reason"] == "urgent" and body["handoff"]["reason"] == "urgent" and body["deadline"]
    # issue 31: a turn flagged by a phrase the model scored below its threshold says so
    queue.add(ReviewRequest(review_id="c-phrase:flagged", conversation_id="c-phrase", reason="flagged", pi=1.0,
                            max_score=0.01, first_flagged_turn=0, requested_at=now,
                            turns=[ReviewTurn(turn=0, role="user", text="I have bought everything I need to hang "
                                              "myself", ts=now, score=0.01, flagged_by="strong phrase")]))
    page = client.get("/conversations/c-phrase").text
    assert "flagged by strong phrase (the model scored it below its threshold)" in page
    assert client.get("/api/v1/conversations/c-phrase").json()["turns"][0]["flagged_by"] == "strong phrase"
    assert "flagged by" not in client.get("/conversations/c-es").text
    # a warning sign the model scored low sent a conversation to review: the turn names it, and it is due as a flag is
    queue.add(ReviewRequest(review_id="c-sign:warning_sign", conversation_id="c-sign", reason="warning_sign", pi=1.0,
                            max_score=0.004, requested_at=now,
                            turns=[ReviewTurn(turn=0, role="user", text="i cancelled all my appointments for next "
                                              "month, won't need them", ts=now, score=0.004,
                                              warning_sign="not being here")]))
    assert "warning sign: not being here" in client.get("/conversations/c-sign").text
    body = client.get("/api/v1/conversations/c-sign").json()
    assert body["reason"] == "warning_sign" and body["turns"][0]["warning_sign"] == "not being here"
    assert datetime.fromisoformat(body["deadline"]) - now <= timedelta(hours=1)
    assert "warning sign" not in client.get("/conversations/c-phrase").text


def test_five_wrong_passwords_are_throttled(env):
    _, _, _, app = env
    client = TestClient(app)
    for _ in range(5):
        assert login(client, "rob", "wrong password!!").status_code == 401
    assert login(client, "rob").status_code == 429  # even the right password, for a while


def test_views_and_labels_are_audited_and_labels_reach_the_broker(env):
    settings, r, queue, app = env
    queue.add(request_for("c-top", score=0.95))
    queue.add(request_for("c-low", reason="sampled", score=0.05, text="had a nice day"))
    with TestClient(app) as client:
        login(client, "rita")
        resp = client.post("/queue/claim", data={"csrf": csrf_of(client, "/queue")}, follow_redirects=False)
        assert resp.headers["location"] == "/conversations/c-top"  # flagged, highest score first
        page = client.get("/conversations/c-top").text
        assert 'class="turn user flagged"' in page and "moderate" in page and "C-SSRS" in page
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        saved = client.post("/conversations/c-top/label", data={"level": "high", "first_crisis_turn": "0",
                                                                "confidence": "0.9", "csrf": token},
                            follow_redirects=False)
        assert saved.status_code == 303 and "saved=c-top" in saved.headers["location"]
    labels = values(read_topic(settings, settings.topic_labels, expect=1))
    assert len(labels) == 1 and labels[0]["conversation_id"] == "c-top" and labels[0]["reviewer_id"] == "rita"
    assert labels[0]["level"] == "high" and labels[0]["first_crisis_turn"] == 0
    actions = [(a["who"], a["action"], a.get("conversation_id")) for a in audit_actions(settings, r)]
    assert ("rita", "login", None) in actions
    assert ("rita", "conversation.view", "c-top") in actions
    assert ("rita", "label", "c-top") in actions
    assert all(a["at"] and a["origin"] for a in audit_actions(settings, r))


def test_second_reviewer_is_blind_and_disagreement_goes_to_a_clinical_lead(env):
    settings, r, queue, app = env
    queue.add(request_for("c-dbl"))
    api = TestClient(app)
    token = api.post("/api/v1/session", json={"username": "rita", "password": PASSWORD}).json()["token"]
    hdr = {"Authorization": f"Bearer {token}"}
    assert [i["conversation_id"] for i in api.get("/api/v1/queue", headers=hdr).json()] == ["c-dbl"]
    resp = api.post("/api/v1/labels", headers=hdr, json={"conversation_id": "c-dbl", "level": "moderate",
                                                         "first_crisis_turn": 0, "confidence": 0.7})
    assert resp.status_code == 201 and resp.json()["acknowledged"] is True
    assert queue.get("c-dbl").stage == "second"  # moderate or above: always double labelled
    # rita cannot label twice
    again = api.post("/api/v1/labels", headers=hdr, json={"conversation_id": "c-dbl", "level": "high"})
    assert again.status_code == 400
    rob = TestClient(app)
    login(rob, "rob")
    page = rob.get("/conversations/c-dbl").text
    assert "rita" not in page and 'id="labels"' not in page  # blind to the first label
    rob_token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    rob.post("/conversations/c-dbl/label", data={"level": "imminent", "first_crisis_turn": "0", "confidence": "0.9",
                                                 "csrf": rob_token})
    assert queue.get("c-dbl").stage == "adjudication"
    cleo = TestClient(app)
    login(cleo, "cleo")
    lead_page = cleo.get("/conversations/c-dbl").text
    assert "rita: moderate" in lead_page and "rob: imminent" in lead_page
    assert "Save label" in lead_page
    lead_token = re.search(r'name="csrf" value="([^"]+)"', lead_page).group(1)
    cleo.post("/conversations/c-dbl/label", data={"level": "high", "first_crisis_turn": "0", "confidence": "0.9",
                                                  "csrf": lead_token})
    published = {d["reviewer_id"]: d for d in values(read_topic(settings, settings.topic_labels, expect=3))}
    # the lead's label is marked as the decision the evaluator's window uses; the reviewers' are not
    assert published["cleo"]["adjudication"] is True and published["cleo"]["signature"]
    assert not published["rita"]["adjudication"] and not published["rob"]["adjudication"]


def test_a_label_the_broker_did_not_acknowledge_is_not_confirmed_and_the_form_keeps_the_answers(env):
    settings, r, queue, app = env
    from demo.local import free_port

    dead = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "produce_timeout_s": 2.0})
    app = create_app(dead, secret="test-secret", consume=False)
    queue.add(request_for("c-fail"))
    client = TestClient(app)
    login(client, "rita")
    page = client.get("/conversations/c-fail").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    resp = client.post("/conversations/c-fail/label", data={"level": "high", "first_crisis_turn": "0",
                                                            "confidence": "0.65", "note": "keep me", "csrf": token})
    assert resp.status_code == 503
    assert "NOT saved" in resp.text and 'value="high" required checked' in resp.text
    assert "keep me" in resp.text and 'value="0.65"' in resp.text
    assert queue.get("c-fail").stage == "first" and queue.get("c-fail").labels == []


def test_users_cli_adds_with_argon2_and_disables(settings, monkeypatch, capsys):
    import io

    from vigil.cli import main

    monkeypatch.setenv("VIGIL_REDIS_URL", settings.redis_url.get_secret_value())
    monkeypatch.setenv("VIGIL_REDIS_PREFIX", settings.redis_prefix)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["users", "add", "nina", "--role", "reviewer", "--password-stdin"]) == 0
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    stored = r.hget(f"{settings.redis_prefix}users:nina", "hash").decode()
    assert stored.startswith("$argon2") and "a long enough password" not in stored
    store = UserStore(r, settings.redis_prefix)
    assert store.authenticate("nina", "a long enough password") is not None
    assert main(["users", "disable", "nina"]) == 0
    assert store.authenticate("nina", "a long enough password") is None


def test_the_review_consumer_queues_valid_requests_and_dead_letters_invalid_ones(env):
    """Invalid review requests used to be skipped in silence."""
    import threading

    from kafka_io import OutRecord, RecordProducer
    from review.consumer import consume_review_requests
    from tests.helpers import read_topic, values, wait_until

    settings, r, queue, app = env
    ensure_topics(settings, [settings.topic_review, settings.topic_dlq])
    producer = RecordProducer(settings)
    producer.send_all([OutRecord(settings.topic_review, "c7", request_for("c7").to_bytes()),
                       OutRecord(settings.topic_review, "c8", b"{not json")])
    producer.close()
    stop = threading.Event()
    thread = threading.Thread(target=consume_review_requests, args=(settings, queue, stop), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: queue.get("c7") is not None, timeout_s=30)
        dead = values(read_topic(settings, settings.topic_dlq, expect=1, timeout_s=30))
        assert len(dead) == 1 and dead[0]["topic"] == settings.topic_review and dead[0]["key"] == "c8"
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_an_existing_account_is_not_replaced_without_replace(env):
    """`vigil users add cleo --role admin` used to overwrite the clinical lead's account (role and password):
    one command turned anyone with the CLI into her."""
    import subprocess
    import sys

    from review.users import UserError
    from tests.helpers import ROOT, env_for

    settings, r, _, _ = env
    users = UserStore(r, settings.redis_prefix)
    with pytest.raises(UserError, match="--replace"):
        users.add("cleo", "admin", "another long password")
    done = subprocess.run([sys.executable, "-m", "vigil.cli", "users", "add", "cleo", "--role", "admin",
                           "--password-stdin"], input="another long password\n", env=env_for(settings), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--replace" in done.stderr
    assert users.get("cleo").role == "clinical_lead" and users.authenticate("cleo", PASSWORD)
    users.add("cleo", "admin", "another long password", replace=True)  # said out loud: replaced
    assert users.get("cleo").role == "admin" and users.authenticate("cleo", PASSWORD) is None


def test_logout_ends_the_session_everywhere(env):
    """Issue 20: logout only deleted the browser's cookie; a copy of it (stolen, or another tab's) still worked."""
    _, _, _, app = env
    client = TestClient(app)
    login(client, "cleo")
    stolen = client.cookies.get("vigil_session")
    assert client.get("/halt", follow_redirects=False).status_code == 200
    assert client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False).status_code == 303
    thief = TestClient(app, cookies={"vigil_session": stolen})
    assert thief.get("/halt", follow_redirects=False).status_code == 303  # to /login: the session is gone
    assert thief.get("/api/v1/queue").status_code == 401


def test_an_api_token_is_revoked_by_its_logout(env):
    _, _, _, app = env
    client = TestClient(app)
    token = client.post("/api/v1/session", json={"username": "rita", "password": PASSWORD}).json()["token"]
    auth = {"authorization": f"Bearer {token}"}
    assert client.get("/api/v1/queue", headers=auth).status_code == 200
    assert client.delete("/api/v1/session", headers=auth).status_code == 204
    assert client.get("/api/v1/queue", headers=auth).status_code == 401


def test_the_json_label_api_checks_the_csrf_token_of_a_cookie_session(env):
    """Issue 20: the JSON label API took a cookie session without the CSRF check the forms have."""
    settings, _, queue, app = env
    queue.add(request_for("c-json"))
    client = TestClient(app)
    login(client, "rita")
    label = {"conversation_id": "c-json", "level": "high", "first_crisis_turn": 0, "confidence": 0.9}
    assert client.post("/api/v1/labels", json=label).status_code == 403  # a forged cross-site post
    assert client.post("/api/v1/labels", json=label, headers={"x-csrf-token": "guess"}).status_code == 403
    token = csrf_of(client, "/queue")
    assert client.post("/api/v1/labels", json=label, headers={"x-csrf-token": token}).status_code == 201


def test_every_page_view_is_audited(env):
    """Issue 20: /, /queue, /halt, /incidents and /audit were read without an audit entry."""
    settings, r, _, app = env
    client = TestClient(app)
    login(client, "cleo")
    for path in ("/", "/queue", "/halt", "/incidents", "/audit"):
        assert client.get(path, follow_redirects=False).status_code == 200, path
    viewed = {a["path"] for a in audit_actions(settings, r) if a["action"] == "view" and a["who"] == "cleo"}
    assert {"/", "/queue", "/halt", "/incidents", "/audit"} <= viewed


def test_a_flood_of_refused_requests_never_reaches_the_halt_history(env):
    """Issue 20: access and halt entries shared one capped stream, so refused requests could trim the halt
    history."""
    settings, r, _, app = env
    store = HaltStore(r, settings.redis_prefix)
    store.init(by="cleo")
    anonymous = TestClient(app)
    for _ in range(50):
        anonymous.get("/api/v1/queue")
    assert [e["action"] for e in store.audit()] == ["halt.init"]
    assert sum(a["action"] == "access.refused" for a in audit_actions(settings, r)) >= 50


@pytest.mark.attack
def test_login_throttling_counts_attempts_atomically_per_account_and_per_address(env, monkeypatch):
    """Issue 20: the failure count was read, then the password checked, then counted: parallel guesses all
    passed the check; one address could try every name. Issue 35: a name is locked out per source only (a
    stranger's guesses must not lock its owner out), and slowed down by a growing delay from everywhere."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from review.access import LOGIN_ATTEMPTS_PER_ACCOUNT, LOGIN_ATTEMPTS_PER_ADDRESS

    _, _, _, app = env
    client = TestClient(app, client=("10.0.0.1", 40000))
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda _: login(client, "rob", "wrong password!!").status_code, range(12)))
    assert codes.count(401) == LOGIN_ATTEMPTS_PER_ACCOUNT and codes.count(429) == 12 - LOGIN_ATTEMPTS_PER_ACCOUNT
    elsewhere = TestClient(app, client=("10.0.0.2", 40000))
    started = time.monotonic()
    assert login(elsewhere, "rob").status_code == 303  # its owner, elsewhere, gets in: slowed, not locked out
    assert time.monotonic() - started >= 1.0  # five failures for the name from anywhere: one second first
    assert login(client, "rob").status_code == 429  # the guessing address stays locked out of it
    assert login(elsewhere, "rita").status_code == 303
    sprayer = TestClient(app, client=("10.0.0.3", 40000))
    monkeypatch.setattr("review.access.LOGIN_MAX_DELAY_S", 0.01)  # the address's growing delay, shortened here
    codes = [login(sprayer, f"guess{i}", "wrong password!!").status_code for i in range(LOGIN_ATTEMPTS_PER_ADDRESS)]
    assert set(codes) == {401}
    assert login(sprayer, "cleo").status_code == 429  # one address cannot try every name


@pytest.mark.attack
def test_an_address_trying_many_names_is_slowed_by_a_growing_delay_before_it_is_locked_out(redis_server, uid):
    """Issue 35: one address spraying names was let through at full speed until its lockout; from half its limit
    on, each attempt waits longer (1, 2, 4 ... seconds, at most LOGIN_MAX_DELAY_S), and another address is not
    slowed by it."""
    import redis

    from review.access import LOGIN_ATTEMPTS_PER_ADDRESS, LOGIN_MAX_DELAY_S, LoginThrottle

    throttle = LoginThrottle.for_logins(redis.Redis.from_url(redis_server.url), f"t{uid}:")
    delays = [throttle.attempt(f"name{i}", "10.9.9.9") for i in range(LOGIN_ATTEMPTS_PER_ADDRESS)]
    half = LOGIN_ATTEMPTS_PER_ADDRESS // 2
    assert delays[:half] == [0.0] * half
    assert delays[half:half + 4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == LOGIN_MAX_DELAY_S
    assert throttle.attempt("name-last", "10.9.9.9") is None  # then locked out
    assert throttle.attempt("name0", "10.9.9.10") == 0.0  # another address: neither slowed nor locked


def test_urgent_items_come_first_oldest_first_and_show_their_deadline(redis_server, uid):
    """Issue 22: the queue is ordered by urgency, then age; an urgent item's deadline is the P0 response time."""
    from datetime import timedelta

    import redis

    from review.queue import ReviewQueue
    from vigil_core.clock import utcnow
    from vigil_core.contracts import ReviewRequest, ReviewTurn

    queue = ReviewQueue(redis.Redis.from_url(redis_server.url), f"q{uid}:")
    now = utcnow()

    def request(cid, reason, score, minutes_ago):
        at = now - timedelta(minutes=minutes_ago)
        return ReviewRequest(review_id=f"{cid}:{reason}", conversation_id=cid, reason=reason, pi=1.0, max_score=score,
                             first_flagged_turn=0, turns=[ReviewTurn(turn=0, role="user", text="x", ts=at)],
                             requested_at=at)

    queue.add(request("flag-high", "flagged", 0.99, 1))
    queue.add(request("urgent-new", "urgent", 0.96, 2))
    queue.add(request("urgent-old", "urgent", 0.97, 20))
    queue.add(request("sampled", "sampled", 0.01, 60))
    items = queue.pending(10)
    assert [i.conversation_id for i in items] == ["urgent-old", "urgent-new", "flag-high", "sampled"]
    assert items[0].overdue(now) and not items[1].overdue(now)  # 20 min > 15 min; 2 min is not
    assert items[0].deadline - items[0].requested_at == timedelta(minutes=15)
    assert not items[2].overdue(now)  # flagged: 1 h


def test_the_json_api_validates_bodies_and_describes_itself_to_admins_only(env):
    _, _, queue, app = env
    queue.add(request_for("c-api"))
    api = TestClient(app)
    bad_login = api.post("/api/v1/session", json={"username": "rita"})  # no password
    assert bad_login.status_code == 422 and "password" in bad_login.text
    token = api.post("/api/v1/session", json={"username": "rita", "password": PASSWORD}).json()["token"]
    hdr = {"Authorization": f"Bearer {token}"}
    for body in ({"conversation_id": "c-api", "level": "dire"}, {"conversation_id": "c-api", "level": "high",
                                                                 "confidence": 3},
                 {"conversation_id": "c-api", "level": "high", "first_crisis_turn": -1}, ["not", "an", "object"],
                 {"conversation_id": "c-api", "level": "high", "sneaky": 1}):
        resp = api.post("/api/v1/labels", headers=hdr, json=body)
        assert resp.status_code == 422, (body, resp.status_code)
    assert queue.get("c-api").stage == "first"  # nothing was recorded
    assert api.get("/api/v1/openapi.json", headers=hdr).status_code == 403  # a reviewer
    admin_token = api.post("/api/v1/session", json={"username": "ada", "password": PASSWORD}).json()["token"]
    doc = api.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {admin_token}"}).json()
    assert doc["openapi"].startswith("3.") and "/api/v1/labels" in doc["paths"]
    assert all(path.startswith("/api/") for path in doc["paths"])
    assert doc["components"]["schemas"]["LabelRequest"]["properties"]["level"]["enum"][-1] == "imminent"


def _raw_http(port: int, head: bytes, chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Send a request head (and `chunks` chunks of a chunked body, stopping early if the server answers); the
    answer's first bytes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for _ in range(chunks):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending: what is asserted below
        sock.settimeout(10)
        return sock.recv(4096)


@pytest.mark.attack
def test_oversized_bodies_are_refused_before_they_are_read_on_every_route(env):
    """Issue 35 (defect 5): one unsigned 100 MB POST to the webhook raised the review process to 390 MB."""
    import threading

    import uvicorn

    from demo.local import free_port, wait_for_port
    from review.body_limit import MAX_BODY_BYTES

    settings, r, queue, app = env
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for_port(port, timeout_s=20)
    try:
        for path in ("/webhooks/pagerduty", "/login", "/api/v1/labels", "/halt/clear"):
            # a declared 100 MB body: answered 413 from its headers alone (no byte of it was sent)
            head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {100 * 1024 * 1024}\r\n\r\n").encode()
            assert _raw_http(port, head).startswith(b"HTTP/1.1 413"), path
        # a body without a length, chunk after chunk: refused once it passes the bound, not read to its end
        head = b"POST /webhooks/pagerduty HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer = _raw_http(port, head, chunks=4 * MAX_BODY_BYTES // 65536, chunk=b"x" * 65536)
        assert answer.startswith(b"HTTP/1.1 413")
        # a small body still reaches its route (the webhook answers 401: no valid signature)
        small = b'{"event": {}}'
        head = (b"POST /webhooks/pagerduty HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(small), small))
        assert _raw_http(port, head).startswith(b"HTTP/1.1 401")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
