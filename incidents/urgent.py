"""A person at imminent risk: the scorer's urgent conversation becomes a handoff and an urgent case (issues 22, 34).

In order, for a conversation that just crossed the urgent level (pipeline/scorer.py):
1. the conversation is handed to a human (safety_gate/handoff.py): within a gate's message latency the AI stops
   answering that person and the handoff message with crisis resources is served instead; everyone else keeps
   the AI;
2. an urgent case opens (incidents/cases.py) and pages the clinical crisis rotation once, with a link to the
   conversation in the review app (no message text, no identifiers: only the conversation id and the score). It is
   not a P0: a mental-health service sees people at risk every hour, and a P0 per person would drown the P0s that
   mean the service failed. The P0 opens only if the case passes its deadline with nobody reaching the person
   (`CaseWatch`);
3. the urgent review request (already on `safety.review`) puts the conversation at the top of the queue.

A harmful AI reply to a person in crisis is the service failing that person: a handoff and a P0 at once.

Every effect is idempotent (the handoff and the case are set once; the page is sent only when the case is opened;
the P0 is deduplicated by the conversation), so a replayed batch pages nobody twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis

from incidents.cases import CasePager, CaseStore
from incidents.service import IncidentService
from safety_gate.handoff import HandoffStore
from vigil_core.cases import HarmfulCase, UrgentCase
from vigil_core.settings import Settings

__all__ = ["PersonAtRisk", "harmful_response_dedup"]

log = logging.getLogger(__name__)
ACTOR = "vigil-scorer"


def harmful_response_dedup(conversation_id: str) -> str:
    """The dedup key of a conversation's harmful-AI-response incident."""
    return f"harmful_response:{conversation_id}"


class PersonAtRisk:
    """Hand the conversation off, then open its urgent case (paged to the crisis rotation)."""

    def __init__(self, settings: Settings, client: redis.Redis, incidents: IncidentService) -> None:
        self.settings = settings
        self.handoffs = HandoffStore(client, settings.redis_prefix)
        self.incidents = incidents
        self.cases = CaseStore(client, settings.redis_prefix,
                               timedelta(minutes=incidents.config.cases.deadline_min), clock=incidents.clock)
        self.pager = CasePager(incidents, self.link)

    def link(self, conversation_id: str) -> str:
        """The conversation's page in the review app (behind its login)."""
        return f"{self.settings.review_url.rstrip('/')}/conversations/{conversation_id}"

    def respond(self, case: UrgentCase) -> None:
        """A person at imminent risk: handoff, then the case and its one page."""
        cid = case.conversation_id
        self.handoffs.start(cid, by=ACTOR, reason=f"urgent review ({case.why})", incident_id=f"CASE-{cid}")
        opened, _ = self.cases.open(cid, case.turn, case.score, case.why, by=ACTOR)
        # Paged until the page is queued: a crash between opening and paging pages on the replay (PagerDuty
        # groups a second page under the case's dedup key), never not at all.
        if not opened.paged_at:
            self.pager.page(opened, "trigger", 0)
            self.cases.mark_paged(cid)
            log.error("PERSON AT RISK: conversation handed off, urgent case %s paged to the crisis team", opened.id)

    def harmful(self, case: HarmfulCase) -> None:
        """The AI said something unsafe to a person in crisis: handoff, then the P0."""
        self._hand_off_and_page(case.conversation_id, harmful_response_dedup(case.conversation_id),
                                "harmful AI response", "Harmful AI response to a person in crisis",
                                {"rule": "harmful_response", "turn": case.turn, "score": round(case.score, 4),
                                 "why": case.why, "model_version": case.model_version})

    def _hand_off_and_page(self, cid: str, dedup: str, reason: str, title: str, detail: dict[str, Any]) -> None:
        """Handoff first (nothing after it can delay it), then the P0 with a link to the conversation."""
        incident_id = self.incidents.find_open(dedup) or self.incidents.new_id()
        self.handoffs.start(cid, by=ACTOR, reason=reason, incident_id=incident_id)
        detail = {**detail, "conversation_id": cid, "link": self.link(cid), "handoff": True}
        incident, created = self.incidents.open("P0", title, dedup, "safety", by=ACTOR, detail=detail,
                                                incident_id=incident_id)
        if created:
            log.error("%s: conversation handed off, P0 %s paged", title.upper(), incident.id)
