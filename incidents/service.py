"""Opening, updating and escalating incidents: each change is published to `safety.incidents` (acked),
folded into the Redis view, and its notifications queued in the durable outbox."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis

from incidents.config import IncidentConfig
from incidents.outbox import Outbox
from incidents.store import SEVERITY_PLAN, Incident, IncidentStore, new_incident_id
from kafka_io import OutRecord, RecordProducer
from vigil_core import keys
from vigil_core.clock import utcnow
from vigil_core.contracts import IncidentEvent
from vigil_core.errors import VigilError
from vigil_core.model_record import LiveModels
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["IncidentService", "IncidentError"]

_MODEL_VERBS = {"promote": "promoted", "rollback": "rolled back", "shadow": "put in shadow",
                "shadow_end": "shadow ended"}

log = logging.getLogger(__name__)

# The claim that one process escalates a level outlives any escalation tier (the longest is hours), so a
# level is never escalated twice, and then expires instead of piling up in Redis.
ESCALATION_CLAIM_TTL_S = 7 * 86400
_NOTIFY_ACTION = {"opened": "trigger", "acknowledged": "acknowledge", "resolved": "resolve", "escalated": "escalate"}


class IncidentError(VigilError):
    """An incident change could not be applied."""


class IncidentService:
    """The incident engine used by the actions, the CLI and the review app."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None, producer: RecordProducer | None = None,
                 config: IncidentConfig | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self._r = client or connect(settings.redis_url.get_secret_value())
        self.store = IncidentStore(self._r, settings.redis_prefix)
        self.producer = producer or RecordProducer(settings)
        self.config = config or IncidentConfig.load(settings.incidents_file)
        self.clock = clock
        self.outbox = Outbox(self._r, settings.redis_prefix, self.config.notifiers(),
                             clock=lambda: self.clock().timestamp())

    def _emit(self, incident_id: str, change: str, by: str, severity: str, title: str = "", dedup_key: str = "",
              detail: dict[str, Any] | None = None) -> Incident:
        event = IncidentEvent(event_id=uuid.uuid4().hex, incident_id=incident_id, change=change,  # type: ignore[arg-type]
                              at=self.clock(), by=by, severity=severity, title=title,  # type: ignore[arg-type]
                              dedup_key=dedup_key, detail=detail or {})
        # Kafka first: the topic is the record the view is rebuilt from. Then the notifications are queued
        # before the view is written: if the write fails, the caller's retry (a pending action, the next
        # escalation round, a person) emits again and may page twice, but a change is never left unannounced.
        self.producer.send_all([OutRecord(self.settings.topic_incidents, incident_id, event.to_bytes())])
        folded = self.store.fold(event)
        if folded is None:
            raise IncidentError(f"incident {incident_id}: no such incident for change {change}")
        incident, index = folded
        if change in _NOTIFY_ACTION:
            self._notify(incident, _NOTIFY_ACTION[change], detail or {})
        if index is not None:
            self.store.write(event, incident, index)
        return incident

    def _notify(self, incident: Incident, action: str, detail: dict[str, Any]) -> None:
        payload = {
            "action": action, "incident_id": incident.id, "dedup_key": incident.dedup_key,
            "severity": incident.severity, "title": incident.title, "state": incident.state,
            "type": incident.type, "escalation_level": incident.escalation_level,
            "metrics": detail.get("metrics", {}), "at": utcnow().isoformat(),
            # where a person acts on it: the conversation for a person at risk, else the incidents page
            "link": detail.get("link") or f"{self.settings.review_url.rstrip('/')}/incidents#{incident.id}",
            "contacts": self.config.contacts(incident.severity, incident.escalation_level),
            "response_time_min": SEVERITY_PLAN[incident.severity][0].total_seconds() / 60,
            "team": SEVERITY_PLAN[incident.severity][1],
        }
        for name in self.config.routing.get(incident.severity, ["log"]):
            self.outbox.enqueue(name, payload)

    def open(self, severity: str, title: str, dedup_key: str, type_: str = "safety", by: str = "vigil",
             detail: dict[str, Any] | None = None, incident_id: str | None = None) -> tuple[Incident, bool]:
        """Open an incident, or add to the open one with the same dedup key; (incident, created)."""
        if severity not in SEVERITY_PLAN:
            raise ValueError(f"severity must be one of {sorted(SEVERITY_PLAN)}")
        wanted = incident_id or new_incident_id(self.clock())
        owner_id = self.store.claim(dedup_key, wanted)
        try:
            existing: Incident | None = self.store.get(owner_id)
        except KeyError:
            existing = None
        if existing is not None and existing.is_open:
            # one open incident per cause: a repeated alert goes on its timeline
            note = {"repeat": True, "title": title, **(detail or {})}
            return self._emit(existing.id, "note", by, existing.severity, detail=note), False
        return self._emit(owner_id, "opened", by, severity, title, dedup_key,
                          {"type": type_, "team": SEVERITY_PLAN[severity][1], **(detail or {})}), True

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        """Acknowledge: stops escalation."""
        inc = self.store.get(incident_id)
        return self._emit(inc.id, "acknowledged", by, inc.severity)

    def note(self, incident_id: str, by: str, text: str, **detail: Any) -> Incident:
        """Add a note to the timeline."""
        inc = self.store.get(incident_id)
        return self._emit(inc.id, "note", by, inc.severity, detail={"text": text, **detail})

    def resolve(self, incident_id: str, by: str, reason: str) -> Incident:
        """Resolve (people only: a metric recovering resolves nothing)."""
        inc = self.store.get(incident_id)
        return self._emit(inc.id, "resolved", by, inc.severity, detail={"reason": reason})

    def escalate_overdue(self) -> list[Incident]:
        """Escalate every open, unacknowledged incident past its response deadline."""
        now = self.clock()
        out = []
        for inc in self.store.list(only_open=True):
            if not deadline_passed(inc, now):
                continue
            level = inc.escalation_level + 1
            # only one process escalates a given level: claim it
            claim = f"{self.settings.redis_prefix}{keys.INCIDENTS}escalated:{inc.id}:{level}"
            if not self._r.set(claim, "1", nx=True, ex=ESCALATION_CLAIM_TTL_S):
                continue
            next_deadline = now + SEVERITY_PLAN[inc.severity][0]
            try:
                escalated = self._emit(inc.id, "escalated", "vigil", inc.severity, detail={
                    "level": level, "next_deadline": next_deadline.isoformat(),
                    "tier": self.config.contacts(inc.severity, level),
                    "reason": f"not acknowledged within {SEVERITY_PLAN[inc.severity][0]}",
                })
            except Exception:
                # Not escalated: give the claim back so the next round (any process) escalates this level.
                self._r.delete(claim)
                raise
            out.append(escalated)
        return out

    def rebuild(self, events: list[IncidentEvent]) -> int:
        """Fold events replayed from the topic into the view; returns how many were new."""
        before = self._r.scard(self.store.seen_key)
        for event in events:
            self.store.apply(event)
        return int(self._r.scard(self.store.seen_key)) - int(before)

    def announce_model_change(self, live: LiveModels, incident_id: str | None = None) -> Incident:
        """Put a change of the live crisis model on `safety.incidents`: on the incident named (a rollback after a
        halt), else on a P3 "Crisis model changed" of its own."""
        verb = _MODEL_VERBS.get(live.action, live.action)
        text = (f"crisis model {verb}: champion {live.champion}"
                + (f" (previous {live.previous})" if live.previous else "")
                + (f", shadow {live.shadow}" if live.shadow else "") + f"; by {live.by}: {live.reason}")
        if incident_id:
            try:
                return self.note(incident_id, live.by, text, model_record=live.to_dict())
            except KeyError:
                pass  # an incident this deployment does not know: the change gets one of its own
        incident, _ = self.open("P3", "Crisis model changed", f"model-change-v{live.version}", type_="model",
                                by=live.by, detail={"text": text, "model_record": live.to_dict()})
        return incident

    def find_open(self, dedup_key: str) -> str | None:
        """The id of the open incident with this dedup key, if any."""
        return self.store.find_open(dedup_key)

    def new_id(self) -> str:
        """A fresh incident id."""
        return new_incident_id(self.clock())

    def start(self) -> None:
        """Start delivering queued notifications."""
        self.outbox.start()

    def stop(self) -> None:
        """Stop delivering (queued notifications stay in the outbox) and close the producer."""
        self.outbox.stop()
        self.close()

    def close(self) -> None:
        """Close the producer."""
        self.producer.close()


def deadline_passed(incident: Incident, now: datetime) -> bool:
    """Whether an unacknowledged incident is overdue."""
    return incident.state == "open" and bool(incident.deadline) and datetime.fromisoformat(incident.deadline) <= now


