"""Urgent cases (issue 34), against the real Redis, the real broker and a real HTTP receiver standing in for
PagerDuty: a person at imminent risk is one case paged once to the crisis rotation (not the P0 route); a case nobody
claimed is re-paged to the next tier at its deadline; a P0 opens only when a case passes its deadline with nobody
reaching the person; the capacity P1 warns when open cases exceed what the team can reach; the crisis team claims,
releases, hands over and closes cases in the review app, and two clinicians cannot take the same person."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from incidents.cases import CASE_BREACH, CASE_CAPACITY, CaseError, CaseStore, CaseWatch, capacity
from incidents.config import IncidentConfig
from incidents.service import IncidentService
from incidents.urgent import PersonAtRisk
from kafka_io import ensure_topics
from review.app import create_app
from review.users import UserStore
from safety_gate.handoff import HandoffStore
from tests.integration.test_incidents import Clock, Receiver
from tests.integration.test_review_app import csrf_of, login
from vigil_core.cases import UrgentCase

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def crisis_config(url: str, team_size: int = 5) -> IncidentConfig:
    """P0s to the full-team PagerDuty service; cases to the crisis rotation's own service (re-pages to its lead's)."""
    base = IncidentConfig.load().raw
    notifiers = {"pagerduty": {"type": "pagerduty", "routing_key": "FULL-TEAM", "url": url},
                 "crisis": {"type": "pagerduty", "routing_key": "CRISIS-ROTA", "url": url,
                            "escalation_routing_key": "CRISIS-LEAD"},
                 "log": {"type": "log"}}
    routing = {"P0": ["pagerduty"], "P1": ["pagerduty"], "P2": ["log"], "P3": ["log"]}
    cases = {**base["cases"], "routing": ["crisis"], "team_size": team_size}
    return IncidentConfig.from_raw({**base, "notifiers": notifiers, "routing": routing, "cases": cases})


def responder(settings, url: str, clock: Clock, team_size: int = 5):
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    service = IncidentService(settings, client, config=crisis_config(url, team_size), clock=clock)
    person = PersonAtRisk(settings, client, service)
    return client, service, person, CaseWatch(person.cases, service, person.pager)


def test_one_page_per_case_a_re_page_at_the_deadline_and_a_p0_only_when_nobody_reached_the_person(settings, receiver):
    clock = Clock()
    client, service, person, watch = responder(settings, receiver.url, clock)
    for cid in ("risk-a", "risk-b", "risk-c"):
        person.respond(UrgentCase(cid, 4, 0.97, "imminent phrase"))
    person.respond(UrgentCase("risk-a", 4, 0.97, "imminent phrase"))  # a replayed batch: nothing new
    service.outbox.dispatch_due()
    pages = [b for b in receiver.bodies if b["event_action"] == "trigger"]
    # one page per person, to the crisis rotation only, grouped per conversation; no incident at all
    assert sorted(b["dedup_key"] for b in pages) == ["urgent_case:risk-a", "urgent_case:risk-b", "urgent_case:risk-c"]
    assert {b["routing_key"] for b in pages} == {"CRISIS-ROTA"}
    assert {b["payload"]["severity"] for b in pages} == {"critical"}
    assert all(b["links"][0]["href"].endswith("/conversations/" + b["dedup_key"].split(":")[1]) for b in pages)
    assert service.store.list() == []
    # each person is handed off at once, the handoff naming the case
    assert HandoffStore(client, settings.redis_prefix).get("risk-a").incident_id == "CASE-risk-a"

    # risk-b: claimed at 5 min, reached at 10; risk-c: claimed, never reached; risk-a: nobody claims it
    clock.now += timedelta(minutes=5)
    person.cases.claim("risk-b", "dr.ana")
    person.cases.claim("risk-c", "dr.ben")
    with pytest.raises(CaseError, match="claimed by dr.ana"):
        person.cases.claim("risk-b", "dr.ben")  # two clinicians never take the same person
    clock.now += timedelta(minutes=5)
    person.cases.close("risk-b", "dr.ana", "contacted")
    clock.now += timedelta(minutes=4)
    assert watch.check()["breached"] == 0  # 14 minutes: before the deadline nothing happens
    receiver.bodies.clear()

    clock.now += timedelta(minutes=2)  # 16 minutes
    assert watch.check()["breached"] == 2
    assert watch.check()["breached"] == 0  # once per case
    service.outbox.dispatch_due()
    # the unclaimed case re-pages the next tier (a page of its own, to the lead's service); the claimed one does not
    re_pages = [b for b in receiver.bodies if b["routing_key"] == "CRISIS-LEAD"]
    assert [b["dedup_key"] for b in re_pages] == ["urgent_case:risk-a:escalation-1"]
    assert "NOT CLAIMED" in re_pages[0]["payload"]["summary"]
    # one P0 to the full team naming each person nobody reached (the second a note on its timeline); none for the
    # person reached in time
    p0s = [i for i in service.store.list() if i.severity == "P0"]
    assert [i.dedup_key for i in p0s] == [CASE_BREACH]
    named = [e["detail"] for e in p0s[0].timeline if e["change"] in ("opened", "note")]
    assert sorted(d["conversation_id"] for d in named) == ["risk-a", "risk-c"]
    assert {d["conversation_id"]: d["claimed_by"] for d in named} == {"risk-a": "", "risk-c": "dr.ben"}
    full_team = [b for b in receiver.bodies if b["routing_key"] == "FULL-TEAM"]
    assert [b["dedup_key"] for b in full_team] == [CASE_BREACH]
    assert person.cases.get("risk-a").breached_at and not person.cases.get("risk-b").breached_at
    # the measured time to contact feeds the capacity rule
    assert person.cases.contact_times() == [600.0]
    service.close()
    client.close()


def test_open_cases_beyond_what_the_team_can_reach_in_time_warn_p1_once(settings, receiver):
    clock = Clock()
    client, service, person, watch = responder(settings, receiver.url, clock, team_size=1)
    # one clinician, no contact measured yet (half the deadline each): two people within 15 minutes
    assert capacity(1, 900, []) == 2 and capacity(5, 900, [300.0, 240.0, 360.0]) == 15
    person.respond(UrgentCase("cap-1", 0, 0.9, "score"))
    person.respond(UrgentCase("cap-2", 0, 0.9, "score"))
    assert watch.check()["over_capacity"] == 0 and service.find_open(CASE_CAPACITY) is None
    person.respond(UrgentCase("cap-3", 0, 0.9, "score"))
    result = watch.check()
    assert result == {"breached": 0, "open": 3, "capacity": 2, "over_capacity": 1}
    watch.check()
    p1s = [i for i in service.store.list() if i.severity == "P1"]
    assert [i.dedup_key for i in p1s] == [CASE_CAPACITY]  # one P1, not one per round
    assert p1s[0].timeline[0]["detail"]["open_cases"] == 3
    assert not [i for i in service.store.list() if i.severity == "P0"]
    service.close()
    client.close()


def test_the_crisis_team_claims_releases_hands_over_and_closes_cases_in_the_review_app(settings):
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(client, settings.redis_prefix)
    for name, role in (("ana", "reviewer"), ("ben", "clinical_lead"), ("omar", "oncall_engineer")):
        users.add(name, role, PASSWORD)
    cases = CaseStore(client, settings.redis_prefix)
    cases.open("web-1", 2, 0.98, "imminent phrase", by="vigil-scorer")
    cases.open("web-2", 3, 0.91, "score", by="vigil-scorer")
    app = create_app(settings, secret="test-secret", consume=False)
    with TestClient(app) as omar:
        login(omar, "omar", PASSWORD)
        assert omar.get("/cases").status_code == 403  # the crisis team's list, not the engineers'
    with TestClient(app) as ana, TestClient(app) as ben:
        login(ana, "ana", PASSWORD)
        login(ben, "ben", PASSWORD)
        page = ana.get("/cases").text
        assert "CASE-web-1" in page and "min" in page and "s left" in page
        listed = ana.get("/api/v1/cases").json()
        assert [c["conversation_id"] for c in listed] == ["web-1", "web-2"]  # nearest deadline first
        assert 0 < listed[0]["seconds_left"] <= 900 and listed[0]["claimed_by"] == ""
        token_a, token_b = csrf_of(ana, "/cases"), csrf_of(ben, "/cases")
        assert ana.post("/cases/web-1/claim", data={"csrf": token_a}, follow_redirects=False).status_code == 303
        taken = ben.post("/cases/web-1/claim", data={"csrf": token_b}, follow_redirects=False)
        assert taken.status_code == 409 and "claimed by ana" in taken.text
        assert ben.post("/cases/web-1/release", data={"csrf": token_b}).status_code == 409  # not ben's to release
        forged = ana.post("/cases/web-2/claim", data={"csrf": "forged"}, follow_redirects=False)
        assert forged.status_code in (400, 403) and cases.get("web-2").state == "open"
        # handed to a colleague, who records the outcome: the case closes and leaves the list
        assert "ben" in ana.get("/cases").text
        refused = ana.post("/cases/web-1/transfer", data={"to": "omar", "csrf": token_a}, follow_redirects=False)
        assert refused.status_code == 409  # an engineer is not a colleague of the crisis team
        moved = ana.post("/cases/web-1/transfer", data={"to": "ben", "csrf": token_a}, follow_redirects=False)
        assert moved.status_code == 303 and cases.get("web-1").claimed_by == "ben"
        done = ben.post("/conversations/web-1/outcome", data={"outcome": "contacted", "note": "", "csrf": token_b},
                        follow_redirects=False)
        assert done.status_code == 303
        closed = cases.get("web-1")
        assert closed.state == "closed" and closed.outcome == "contacted" and closed.closed_by == "ben"
        assert closed.contacted_at
        assert [c["conversation_id"] for c in ben.get("/api/v1/cases").json()] == ["web-2"]
    actions = [(a["action"], a["by"]) for a in cases.audit()]
    assert actions[:3] == [("close", "ben"), ("transfer", "ana"), ("claim", "ana")]
    client.close()
