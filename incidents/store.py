"""Incidents per the response plan: severities, dedup keys, states, an append-only timeline.

Kafka (`safety.incidents`) is the record: every change is an `IncidentEvent` published (and
acknowledged) before the live view in Redis is updated, so the view can be rebuilt by replaying the
topic (`IncidentStore.apply`, idempotent per event id).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis

from vigil_core import keys
from vigil_core.clock import utcnow
from vigil_core.contracts import IncidentEvent
from vigil_core.errors import VigilError
from vigil_core.redis_client import store_errors

__all__ = ["SEVERITY_PLAN", "Incident", "IncidentStore", "IncidentNotFound", "new_incident_id"]

# Severity -> (response time, who responds): the incident response plan.
SEVERITY_PLAN: dict[str, tuple[timedelta, str]] = {
    "P0": (timedelta(minutes=15), "full team"),
    "P1": (timedelta(hours=1), "core team"),
    "P2": (timedelta(hours=4), "on-call engineer"),
    "P3": (timedelta(hours=24), "product team"),
}
# A dedup claim reserves a cause's key for the incident being opened, so two evaluators that see the same
# alert at once open one incident. Once opened, the open-incident index answers instead; the claim only has
# to outlive that gap (milliseconds), and an hour keeps a stuck open from blocking the key for ever.
DEDUP_CLAIM_TTL_S = 3600


class IncidentNotFound(VigilError, KeyError):
    """No incident with that id."""


def new_incident_id(now: datetime | None = None) -> str:
    """INC-YYYYMMDD-xxxxxx."""
    now = now or utcnow()
    return f"INC-{now:%Y%m%d}-{uuid.uuid4().hex[:6]}"


@dataclass
class Incident:
    """The live view of one incident."""

    id: str
    severity: str
    type: str
    title: str
    dedup_key: str
    state: str = "open"  # open, acknowledged, mitigated, resolved
    owner: str = ""
    opened_at: str = ""
    acknowledged_at: str = ""
    resolved_at: str = ""
    escalation_level: int = 0
    deadline: str = ""  # when an unacknowledged incident escalates next
    halt_version: int | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)

    @property
    def tripped_halt(self) -> bool:
        """Whether a safety halt was tripped for this incident (when it opened, or later on its timeline)."""
        return self.halt_version is not None or any(
            isinstance(t.get("detail"), dict) and t["detail"].get("halt_version") is not None for t in self.timeline)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Incident:
        """Inverse of to_dict."""
        return cls(**d)

    @property
    def is_open(self) -> bool:
        """Not resolved."""
        return self.state != "resolved"


_APPLY = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
if ARGV[5] == 'open' then redis.call('HSET', KEYS[4], ARGV[6], ARGV[4])
elseif ARGV[5] == 'closed' then
  if redis.call('HGET', KEYS[4], ARGV[6]) == ARGV[4] then redis.call('HDEL', KEYS[4], ARGV[6]) end
end
return 1
"""


class IncidentStore:
    """The Redis view of incidents: `incident:{id}`, `incidents:all`, `incidents:open` (dedup key -> id)."""

    def __init__(self, client: redis.Redis, prefix: str = "vigil:") -> None:
        self._r = client
        self._p = prefix
        self.open_key = f"{prefix}{keys.INCIDENTS}open"
        self.all_key = f"{prefix}{keys.INCIDENTS}all"
        self.seen_key = f"{prefix}{keys.INCIDENTS}events"
        self._apply = client.register_script(_APPLY)

    def key(self, incident_id: str) -> str:
        """`{prefix}incident:{id}`."""
        return f"{self._p}{keys.INCIDENT}{incident_id}"

    def get(self, incident_id: str) -> Incident:
        """The incident, or IncidentNotFound."""
        with store_errors():
            raw = self._r.get(self.key(incident_id))
        if raw is None:
            raise IncidentNotFound(incident_id)
        return Incident.from_dict(json.loads(raw))

    def find_open(self, dedup_key: str) -> str | None:
        """The open incident for a cause, if any."""
        raw = self._r.hget(self.open_key, dedup_key)
        return raw.decode() if raw else None

    def open_counts(self) -> dict[str, int]:
        """Open incidents per severity, every severity present (0 when none)."""
        open_now = self.list(only_open=True)
        return {severity: sum(i.severity == severity for i in open_now) for severity in SEVERITY_PLAN}

    def claim(self, dedup_key: str, incident_id: str) -> str:
        """Reserve `dedup_key` for a new incident; returns the id that owns it (ours or an open one)."""
        claim_key = f"{self._p}{keys.INCIDENTS}claim:{dedup_key}"
        existing = self.find_open(dedup_key)
        if existing:
            return existing
        if self._r.set(claim_key, incident_id, nx=True, ex=DEDUP_CLAIM_TTL_S):
            return incident_id
        owner = self._r.get(claim_key)
        return owner.decode() if owner else incident_id

    def release_claim(self, dedup_key: str) -> None:
        """Free a cause's claim once its incident is resolved."""
        self._r.delete(f"{self._p}{keys.INCIDENTS}claim:{dedup_key}")

    def list(self, only_open: bool = False) -> list[Incident]:
        """All incidents, newest first."""
        ids = [i.decode() for i in self._r.zrevrange(self.all_key, 0, -1)]
        out = []
        for i in ids:
            try:
                inc = self.get(i)
            except IncidentNotFound:
                continue
            if inc.is_open or not only_open:
                out.append(inc)
        return out

    def apply(self, event: IncidentEvent) -> Incident | None:
        """Fold one event into the view (idempotent per event id); returns the incident, None if unknown."""
        folded = self.fold(event)
        if folded is None:
            return None
        incident, index = folded
        if index is not None:
            self.write(event, incident, index)
        return incident

    def fold(self, event: IncidentEvent) -> tuple[Incident, str | None] | None:
        """The incident as it is after `event`, and the index to write it to (None: the event was folded in
        already); None if the incident is unknown. Writes nothing."""
        try:
            current = self.get(event.incident_id)
        except IncidentNotFound:
            current = None
        at = event.at.isoformat()
        if event.change == "opened":
            plan = SEVERITY_PLAN[event.severity][0]
            current = current or Incident(
                id=event.incident_id, severity=event.severity, type=str(event.detail.get("type", "safety")),
                title=event.title, dedup_key=event.dedup_key, opened_at=at,
                deadline=(event.at + plan).isoformat(), halt_version=event.detail.get("halt_version"),
                owner=str(event.detail.get("owner", "")),
            )
        if current is None:
            return None
        if any(t["event_id"] == event.event_id for t in current.timeline):
            return current, None
        current.timeline.append({"event_id": event.event_id, "change": event.change, "at": at, "by": event.by,
                                 "detail": event.detail})
        index = "none"
        if event.change == "acknowledged" and current.state == "open":
            current.state, current.acknowledged_at = "acknowledged", at
            current.owner = current.owner or event.by
        elif event.change == "mitigated" and current.state in ("open", "acknowledged"):
            current.state = "mitigated"
        elif event.change == "resolved":
            current.state, current.resolved_at = "resolved", at
            index = "closed"
        elif event.change == "escalated":
            current.escalation_level = int(event.detail.get("level", current.escalation_level + 1))
            current.deadline = str(event.detail.get("next_deadline", current.deadline))
        if event.change == "opened":
            index = "open"
        return current, index

    def write(self, event: IncidentEvent, incident: Incident, index: str) -> None:
        """Store a folded incident (idempotent per event id)."""
        opened = datetime.fromisoformat(incident.opened_at).timestamp()
        with store_errors():
            self._apply(keys=[self.key(incident.id), self.seen_key, self.all_key, self.open_key],
                        args=[event.event_id, json.dumps(incident.to_dict(), default=str), opened, incident.id,
                              index, incident.dedup_key])
        if index == "closed":
            self.release_claim(incident.dedup_key)
