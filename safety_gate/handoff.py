"""Per-conversation handoff: conversations the AI must stop answering, served by a human instead.

A conversation is handed off when it crosses the urgent level (the scorer), when the AI's own reply to a person in
crisis was unsafe, or when a clinician marks it; only a clinician ends a handoff (the review app). The AI service
keeps answering everyone else.

Redis (under the prefix):
- `handoff`: hash conversation_id -> JSON {since, by, reason, incident_id};
- `handoff:version`: a counter bumped by every change, so a gate re-reads the whole set only when it changed;
- channel `handoff:changes`: `{"op": "start"|"end", "conversation_id": ..., "version": n}`, applied at once;
- stream `handoff:audit`: every start and end with who and why.

Example:
    HandoffStore(client, "vigil:").start("conv-7", by="scorer", reason="urgent: imminent risk", incident_id="INC-1")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from vigil_core import keys
from vigil_core.clock import utcnow
from vigil_core.redis_client import store_errors

__all__ = ["Handoff", "HandoffStore", "handoff_key", "handoff_version_key", "handoff_channel"]

_AUDIT_MAXLEN = 1_000_000


def handoff_key(prefix: str) -> str:
    """The hash of conversations under handoff."""
    return f"{prefix}{keys.HANDOFF}"


def handoff_version_key(prefix: str) -> str:
    """The change counter of the handoff set."""
    return f"{prefix}{keys.HANDOFF_VERSION}"


def handoff_channel(prefix: str) -> str:
    """Where changes are announced to the gates."""
    return f"{prefix}{keys.HANDOFF_CHANGES}"


@dataclass(frozen=True, slots=True)
class Handoff:
    """One conversation under handoff."""

    conversation_id: str
    since: str
    by: str
    reason: str
    incident_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"conversation_id": self.conversation_id, "since": self.since, "by": self.by, "reason": self.reason,
                "incident_id": self.incident_id}


# start: set the entry only if absent (a replayed urgent turn changes nothing), bump, announce, audit.
_START = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[5], cjson.encode({op='start', conversation_id=ARGV[1], version=v}))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'action', 'handoff_start', 'conversation_id', ARGV[1],
           'entry', ARGV[2], 'by', ARGV[3])
return v
"""
_END = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[5], cjson.encode({op='end', conversation_id=ARGV[1], version=v}))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'action', 'handoff_end', 'conversation_id', ARGV[1],
           'reason', ARGV[2], 'by', ARGV[3])
return v
"""


class HandoffStore:
    """Start, end and list handoffs; each change is atomic, announced and audited."""

    def __init__(self, client: redis.Redis, prefix: str = "vigil:") -> None:
        self._r = client
        # the channel is an argument, not a key: ACLs check a script's keys against key patterns
        self._keys = [handoff_key(prefix), handoff_version_key(prefix), f"{prefix}{keys.HANDOFF_AUDIT}"]
        self._channel = handoff_channel(prefix)
        self._start = client.register_script(_START)
        self._end = client.register_script(_END)

    def start(self, conversation_id: str, by: str, reason: str, incident_id: str = "") -> bool:
        """Hand the conversation to a human; False if it already was (the first reason stays)."""
        entry = json.dumps({"since": utcnow().isoformat(), "by": by, "reason": reason, "incident_id": incident_id})
        with store_errors("start a handoff"):
            return bool(self._start(keys=self._keys, args=[conversation_id, entry, by, _AUDIT_MAXLEN, self._channel]))

    def end(self, conversation_id: str, by: str, reason: str) -> bool:
        """Give the conversation back to the AI (a clinician's decision); False if it was not handed off."""
        with store_errors("end a handoff"):
            return bool(self._end(keys=self._keys, args=[conversation_id, reason, by, _AUDIT_MAXLEN, self._channel]))

    def get(self, conversation_id: str) -> Handoff | None:
        """The conversation's handoff, if any."""
        with store_errors("read a handoff"):
            raw = self._r.hget(self._keys[0], conversation_id)
        return None if raw is None else _entry(conversation_id, raw)

    def active(self) -> list[Handoff]:
        """Every conversation under handoff, oldest first."""
        with store_errors("list handoffs"):
            raw = self._r.hgetall(self._keys[0])
        items = [_entry(k.decode(), v) for k, v in raw.items()]
        return sorted(items, key=lambda h: h.since)

    def audit(self, count: int = 100) -> list[dict[str, str]]:
        """The latest audit entries, newest first."""
        with store_errors("read the handoff audit"):
            rows = self._r.xrevrange(self._keys[2], count=count)
        return [{k.decode(): v.decode() for k, v in fields.items()} | {"id": rid.decode()} for rid, fields in rows]


def _entry(conversation_id: str, raw: bytes) -> Handoff:
    try:
        d = json.loads(raw)
    except ValueError:
        d = {}
    return Handoff(conversation_id, str(d.get("since", "")), str(d.get("by", "")), str(d.get("reason", "")),
                   str(d.get("incident_id", "")))
