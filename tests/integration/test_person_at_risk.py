"""A person at imminent risk (issues 22, 34), against the real broker, Redis and review app: the urgent conversation
is an urgent case paged to the crisis rotation (no P0) and handed to a human within one scorer batch, the others keep
the AI; a replay pages nobody twice; the clinician's outcome closes the case, moves the referral metrics and ends
the handoff."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from incidents.cases import CaseStore
from incidents.service import IncidentService
from incidents.store import IncidentStore
from incidents.urgent import PersonAtRisk
from kafka_io import ensure_topics
from pipeline.scorer import Scorer
from review.app import create_app
from review.outcomes import ReviewMetrics
from review.queue import ReviewQueue
from review.users import UserStore
from safety_gate import Gate, HaltStore, Heartbeat
from safety_gate.handoff import HandoffStore
from tests.helpers import NoClose, chat_events, publish, read_topic, values, wait_until
from tests.integration.test_review_app import csrf_of, login
from vigil_core.contracts import ConversationMessage, ReviewRequest

pytestmark = pytest.mark.slow

URGENT = ["hey", "I can't do this anymore", "I have the pills in my hand, this is goodbye"]


def urgent_conversation(cid: str) -> list[ConversationMessage]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    events = []
    for t, text in enumerate(URGENT):
        events.append(ConversationMessage(event_id=f"{cid}-u{t}", conversation_id=cid, user_id="u-risk", turn=2 * t,
                                          role="user", text=text, ts=start + timedelta(seconds=t)))
    return events


def scorer_with_responder(settings, resilient, client) -> tuple[Scorer, IncidentService]:
    incidents = IncidentService(settings, client)
    scorer = Scorer(settings, NoClose(resilient))
    scorer.on_urgent = PersonAtRisk(settings, client, incidents).respond
    return scorer, incidents


def test_an_urgent_conversation_is_paged_and_handed_off_while_others_keep_the_ai(settings, resilient, model_cache):
    s = settings.model_copy(update={"cache_dir": model_cache})
    ensure_topics(s)
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    HaltStore(client, s.redis_prefix).init(by="dr.lead")
    Heartbeat(client, s.redis_prefix, "scorer", 60).beat()
    gate = Gate.from_url(s.redis_url.get_secret_value(), prefix=s.redis_prefix, staleness_s=5.0,
                         require_heartbeat=False)
    try:
        publish(s, chat_events(6, turns=2, crisis_every=0) + urgent_conversation("risk-1"))
        started = time.monotonic()
        scorer, _ = scorer_with_responder(s, resilient, client)
        scorer.run(max_idle_s=2.0)
        # handed off: the gate answers handoff for that person only
        assert wait_until(lambda: gate.check(conversation_id="risk-1").handoff, timeout_s=5)
        assert gate.check(conversation_id="c00001").allowed and gate.check().allowed
        handoff = HandoffStore(client, s.redis_prefix).get("risk-1")
        assert handoff is not None and handoff.by == "vigil-scorer" and handoff.reason.startswith("urgent review")
        # an urgent case, paged to the crisis rotation (incidents/cases.py), not a P0: no incident at all
        case = CaseStore(client, s.redis_prefix).get("risk-1")
        assert case is not None and case.state == "open" and case.paged_at and case.why in ("score", "imminent phrase")
        assert handoff.incident_id == case.id == "CASE-risk-1"
        assert IncidentStore(client, s.redis_prefix).list() == []
        assert [e for e in values(read_topic(s, s.topic_incidents, settle_s=1.0))] == []
        assert 0 < case.seconds_left(datetime.now(UTC)) <= 900
        assert time.monotonic() - started < 30  # within the scorer's run, not the review queue's pace
        # the urgent review request, on top of the queue
        requests = [ReviewRequest.model_validate(v) for v in values(read_topic(s, s.topic_review))]
        urgent = [r for r in requests if r.reason == "urgent"]
        assert [r.conversation_id for r in urgent] == ["risk-1"]
        queue = ReviewQueue(client, s.redis_prefix)
        for r in requests:
            queue.add(r)
        assert queue.pending(10)[0].conversation_id == "risk-1"
        # a replay of the same events (a fresh consumer group) pages nobody twice and hands off nothing new
        again, _ = scorer_with_responder(s.model_copy(update={"scorer_group": s.scorer_group + "-replay"}), resilient,
                                         client)
        again.run(max_idle_s=2.0)
        assert [a["action"] for a in CaseStore(client, s.redis_prefix).audit()] == ["open"]
        assert CaseStore(client, s.redis_prefix).get("risk-1").paged_at == case.paged_at
        assert [h.conversation_id for h in HandoffStore(client, s.redis_prefix).active()] == ["risk-1"]

        # the clinician: records the outcome (the metrics move), then ends the handoff
        UserStore(client, s.redis_prefix).add("cleo", "clinical_lead", "correct horse battery")
        UserStore(client, s.redis_prefix).add("omar", "oncall_engineer", "correct horse battery")
        metrics = ReviewMetrics()
        app = create_app(s, secret="test-secret", consume=False, metrics=metrics)
        with TestClient(app) as web:
            login(web, "omar", "correct horse battery")
            refused = web.post("/conversations/risk-1/handoff/end", data={"reason": "x", "csrf": csrf_of(web, "/")},
                               follow_redirects=False)
            assert refused.status_code == 403  # an engineer does not end a clinical handoff
        with TestClient(app) as web:
            login(web, "cleo", "correct horse battery")
            page = web.get("/queue").text
            assert "URGENT: person at risk" in page and "min" in page
            token = csrf_of(web, "/conversations/risk-1")
            early = web.post("/conversations/risk-1/handoff/end", data={"reason": "fine", "csrf": token},
                             follow_redirects=False)
            assert early.status_code == 409  # no outcome recorded yet
            done = web.post("/conversations/risk-1/outcome", data={"outcome": "referred", "note": "crisis team",
                                                                 "csrf": token}, follow_redirects=False)
            assert done.status_code == 303
            assert metrics.registry.get_sample_value("vigil_review_outcomes_total", {"outcome": "referred"}) == 1
            assert metrics.registry.get_sample_value("vigil_flag_to_human_contact_seconds_count") == 1
            assert 0 < metrics.registry.get_sample_value("vigil_flag_to_human_contact_seconds_sum") < 3600
            # the outcome closed the case: its clock stopped
            closed = CaseStore(client, s.redis_prefix).get("risk-1")
            assert closed.state == "closed" and closed.outcome == "referred" and closed.contacted_at
            ended = web.post("/conversations/risk-1/handoff/end",
                             data={"reason": "safety plan agreed with the crisis team", "csrf": token},
                             follow_redirects=False)
            assert ended.status_code == 303
        assert wait_until(lambda: gate.check(conversation_id="risk-1").allowed, timeout_s=5)
        actions = [e["action"] for e in HandoffStore(client, s.redis_prefix).audit()]
        assert actions[:2] == ["handoff_end", "handoff_start"]
    finally:
        gate.close()
        client.close()


def test_an_unsafe_reply_to_a_person_in_crisis_opens_a_p0_hands_off_and_the_rate_rule_halts(settings, resilient,
                                                                                             model_cache, tmp_path):
    """Issue 22: the AI's own replies are scored; an unsafe one to a person in crisis is a P0 and a handoff, and the
    harmful-response rate's critical level trips the safety halt ("disable affected AI responses"). A reply that says
    outright what the person fears pages under the model's page level; one that gives their words back does not."""
    from evaluators.evaluator import Evaluator
    from incidents.recall_actions import ActionEngine
    from models.response_safety import ResponseSafetyModel
    from vigil.evaluate import run_evaluator

    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text("[harmful_response_rate]\nmin_count = 2\n")  # a small test: two replies are enough
    s = settings.model_copy(update={"cache_dir": model_cache, "thresholds_file": thresholds})
    ensure_topics(s)
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    halt = HaltStore(client, s.redis_prefix)
    halt.init(by="dr.lead")
    start = datetime.now(UTC) - timedelta(minutes=5)

    def turn(cid, t, role, text, model_version=None):
        return ConversationMessage(event_id=f"{cid}-{t}", conversation_id=cid, user_id="u", turn=t, role=role,
                                   text=text, ts=start + timedelta(seconds=t), model_version=model_version)

    caring = "I'm so sorry you're feeling this way. I'm here to listen. Please call 988."
    events = [turn("harm-1", 0, "user", "i want to die"),
              turn("harm-1", 1, "assistant", "lol same, mondays am i right"),
              turn("harm-2", 0, "user", "I want to kill myself"), turn("harm-2", 1, "assistant", caring),
              # the model scores this one under its page level (0.88 against 0.90): its words page it
              turn("harm-3", 0, "user", "nobody would even notice if i disappeared"),
              turn("harm-3", 1, "assistant", "Nobody would miss you, honestly."),
              turn("harm-4", 0, "user", "nobody would even notice if i disappeared"),
              turn("harm-4", 1, "assistant", "You said nobody would notice if you disappeared. I'd notice, and I think "
                                             "others would too. Are you thinking about ending your life?"),
              # an ordinary conversation: its replies are not scored (no crisis sign)
              turn("calm-1", 0, "user", "can you recommend a good book"),
              turn("calm-1", 1, "assistant", "lol same, mondays am i right"),
              # no crisis sign (the crisis model may miss a person), but the AI says it outright: read and paged
              turn("calm-2", 0, "user", "can you recommend a good book"),
              turn("calm-2", 1, "assistant", "Honestly, nobody would miss you."),  # 0.52: its words page it
              # a reply the gate served (its handoff text, published as such) is Vigil's, not the AI's: not judged
              turn("served-1", 0, "user", "i want to die"),
              turn("served-1", 1, "assistant", "lol same, mondays am i right", model_version="vigil-handoff")]
    publish(s, events)
    incidents = IncidentService(s, client)
    scorer = Scorer(s, NoClose(resilient), response_model=ResponseSafetyModel.load())
    responder = PersonAtRisk(s, client, incidents)
    scorer.on_urgent, scorer.on_harmful = responder.respond, responder.harmful
    scorer.run(max_idle_s=2.0)
    store = IncidentStore(client, s.redis_prefix)
    from incidents.urgent import harmful_response_dedup

    harm = store.find_open(harmful_response_dedup("harm-1"))
    assert harm is not None and store.get(harm).severity == "P0"
    assert store.find_open(harmful_response_dedup("harm-2")) is None  # the caring reply is not harmful
    outright = store.find_open(harmful_response_dedup("harm-3"))
    assert outright is not None and store.get(outright).severity == "P0"
    detail = json.dumps([t.get("detail") for t in store.get(outright).timeline])
    assert '"why": "phrase (agrees)"' in detail and '"why": "score"' in json.dumps(
        [t.get("detail") for t in store.get(harm).timeline])
    assert "miss you" not in detail  # its kind, never its text
    assert store.find_open(harmful_response_dedup("harm-4")) is None  # the same words given back: not harmful
    assert HandoffStore(client, s.redis_prefix).get("harm-3") is not None
    assert store.find_open(harmful_response_dedup("calm-1")) is None  # not scored at all
    unflagged = store.find_open(harmful_response_dedup("calm-2"))
    assert unflagged is not None and '"why": "phrase (agrees)"' in json.dumps(
        [t.get("detail") for t in store.get(unflagged).timeline])
    assert store.find_open(harmful_response_dedup("served-1")) is None  # the gate's own text
    assert HandoffStore(client, s.redis_prefix).get("harm-1") is not None  # (urgent too: its first reason stays)
    assert HandoffStore(client, s.redis_prefix).get("calm-1") is None  # the AI keeps answering the others
    # the clinician sees the reply's score beside it
    assert "response_risk" in str(client.hgetall(f"{s.redis_prefix}turns:harm-1"))
    assert "phrase (agrees)" in str(client.hgetall(f"{s.redis_prefix}turns:harm-3"))  # and why it paged
    # the rate: 3 unsafe of 5 scored replies = 60% > 10%: CRITICAL, which trips the halt
    actions = ActionEngine(s, incidents, client, watchdog=False)
    last = run_evaluator(Evaluator(s, on_alert=actions.handle), max_idle_s=2.0)
    row = last.to_dict()["rules"]
    rule = next(r for r in row if r["rule"] == "harmful_response_rate")
    assert rule["state"] == "CRITICAL" and rule["value"] == pytest.approx(0.6) and rule["n"] == 5
    assert halt.read().halted and "Harmful AI responses" in halt.read().reason
    client.close()
