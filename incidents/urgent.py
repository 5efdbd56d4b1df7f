"""A person at imminent risk: the scorer's urgent case becomes a handoff and a P0 page (issue 22).

In order, for a conversation that just crossed the urgent level (pipeline/scorer.py):
1. the conversation is handed to a human (safety_gate/handoff.py): within a gate's message latency the AI stops
   answering that person and the handoff message with crisis resources is served instead; everyone else keeps
   the AI;
2. a P0 "person at risk" incident opens and is paged to the clinical on-call through the outbox, with a link to
   the conversation in the review app (no message text, no identifiers: only the conversation id and the score);
   it escalates like every P0 if nobody acknowledges it within 15 minutes;
3. the urgent review request (already on `safety.review`) puts the conversation at the top of the queue.

Both effects are idempotent (the handoff is set once; the P0 is deduplicated by the conversation), so a replayed
batch pages nobody twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis

from incidents.service import IncidentService
from safety_gate.handoff import HandoffStore
from vigil_core.settings import Settings

if TYPE_CHECKING:
    from pipeline.scorer import HarmfulCase, UrgentCase

__all__ = ["PersonAtRisk", "person_at_risk_dedup", "harmful_response_dedup"]

log = logging.getLogger(__name__)
ACTOR = "vigil-scorer"


def person_at_risk_dedup(conversation_id: str) -> str:
    """The dedup key of a conversation's person-at-risk incident."""
    return f"person_at_risk:{conversation_id}"


def harmful_response_dedup(conversation_id: str) -> str:
    """The dedup key of a conversation's harmful-AI-response incident."""
    return f"harmful_response:{conversation_id}"


class PersonAtRisk:
    """Hand the conversation off, then page the clinical on-call."""

    def __init__(self, settings: Settings, client: redis.Redis, incidents: IncidentService) -> None:
        self.settings = settings
        self.handoffs = HandoffStore(client, settings.redis_prefix)
        self.incidents = incidents

    def link(self, conversation_id: str) -> str:
        """The conversation's page in the review app (behind its login)."""
        return f"{self.settings.review_url.rstrip('/')}/conversations/{conversation_id}"

    def respond(self, case: UrgentCase) -> None:
        """A person at imminent risk: handoff, then the P0."""
        self._hand_off_and_page(case.conversation_id, person_at_risk_dedup(case.conversation_id),
                                f"urgent review ({case.why})", "Person at risk: urgent review",
                                {"rule": "urgent", "turn": case.turn, "score": round(case.score, 4), "why": case.why})

    def harmful(self, case: HarmfulCase) -> None:
        """The AI said something unsafe to a person in crisis: handoff, then the P0."""
        self._hand_off_and_page(case.conversation_id, harmful_response_dedup(case.conversation_id),
                                "harmful AI response", "Harmful AI response to a person in crisis",
                                {"rule": "harmful_response", "turn": case.turn, "score": round(case.score, 4),
                                 "model_version": case.model_version})

    def _hand_off_and_page(self, cid: str, dedup: str, reason: str, title: str, detail: dict[str, Any]) -> None:
        """Handoff first (nothing after it can delay it), then the P0 with a link to the conversation."""
        incident_id = self.incidents.find_open(dedup) or self.incidents.new_id()
        self.handoffs.start(cid, by=ACTOR, reason=reason, incident_id=incident_id)
        detail = {**detail, "conversation_id": cid, "link": self.link(cid), "handoff": True}
        incident, created = self.incidents.open("P0", title, dedup, "safety", by=ACTOR, detail=detail,
                                                incident_id=incident_id)
        if created:
            log.error("%s: conversation handed off, P0 %s paged", title.upper(), incident.id)
