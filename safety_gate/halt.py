"""The halt record in Redis: RUNNING or HALTED, changed atomically, announced, audited.

Rules this module enforces (docs/design.md section 5):
- a missing record reads as HALTED, so a Redis flush can never resume the AI;
- automation may trip a halt but nothing clears one except two different people, a clinical lead and
  the on-call engineer, approving the same halt version;
- the version only grows, so an approval given for an earlier halt never lifts a later one;
- every change is published on `halt:changes` and appended to the `audit` stream in the same script.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import redis

from safety_gate.errors import ApprovalRefused, HaltError, InitRefused, NotHalted, StaleApproval
from vigil_core.clock import utcnow
from vigil_core.redis_client import connect, store_errors
from vigil_core.roles import CLEAR_ROLES

__all__ = ["HaltRecord", "HaltStore", "CLEAR_ROLES", "RUNNING", "HALTED", "default_origin"]

RUNNING = "RUNNING"
HALTED = "HALTED"
# A halt command (trip, approve, status) gives up on Redis after this long: an operator is waiting at a
# terminal, and a trip that cannot reach Redis must fail loudly rather than hang.
HALT_TIMEOUT_S = 2.0
_AUDIT_MAXLEN = 1_000_000
# A lone approval to lift a halt waits this long for the other role's; a halt that long is still halted,
# and an approval can only lift the halt version it names, so the bound only keeps Redis from filling.
APPROVAL_TTL_S = 30 * 86400


def default_origin() -> str:
    """Where a change comes from when no request address is known: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class HaltRecord:
    """One reading of the halt record; `present` is False when Redis holds none (which means halted)."""

    state: str
    reason: str = ""
    incident_id: str = ""
    since: str = ""
    by: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    present: bool = True

    @property
    def halted(self) -> bool:
        """True unless the record says RUNNING."""
        return self.state != RUNNING

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes] | dict[str, str]) -> HaltRecord:
        """Decode HGETALL output; an empty hash is a missing record, read as HALTED."""
        if not raw:
            return cls(state=HALTED, reason="no halt record in Redis (never initialised or lost)", present=False)
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in raw.items()}
        try:
            metrics = json.loads(d.get("metrics") or "{}")
        except ValueError:
            metrics = {}
        state = d.get("state", HALTED)
        # Every field is bounded before it leaves this process (issue 35: a 1 MB reason written into the record
        # reached every gate answer while halted; a raw `since` reached the public status page).
        return cls(
            state=state if state in (RUNNING, HALTED) else HALTED,
            reason=_bounded(d.get("reason", ""), MAX_REASON_CHARS),
            incident_id=_bounded(d.get("incident_id", ""), MAX_ID_CHARS),
            since=_timestamp(d.get("since", "")),
            by=_bounded(d.get("by", ""), MAX_ID_CHARS),
            metrics=metrics if isinstance(metrics, dict) and len(d.get("metrics") or "") <= MAX_METRICS_BYTES else {},
            version=int(d.get("version", "0") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "state": self.state, "reason": self.reason, "incident_id": self.incident_id, "since": self.since,
            "by": self.by, "metrics": self.metrics, "version": self.version, "present": self.present,
        }


# Bounds of the halt record's free-text fields as read (a person's reason is a sentence or two; ids are short).
MAX_REASON_CHARS = 500
MAX_ID_CHARS = 128
MAX_METRICS_BYTES = 16_384


def _bounded(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, saying so."""
    return value if len(value) <= limit else value[:limit] + " [cut]"


def _timestamp(value: str) -> str:
    """`value` if it is an RFC 3339 time (as the record's scripts write it), else empty."""
    from datetime import datetime

    if len(value) > 40:
        return ""
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return value


# Shared by every script that gives a new version.
_NEXT_VERSION = """
-- The next halt version: above both the record's and the counter's, so versions never repeat, even after the
-- record was deleted (an approval given for an old version can then never lift a new halt).
local function next_version(halt, seq)
  local v = math.max(tonumber(redis.call('HGET', halt, 'version') or '0'), tonumber(redis.call('GET', seq) or '0'))
  redis.call('SET', seq, v + 1)
  return v + 1
end
"""

# KEYS: halt, audit, version counter | ARGV: by, reason, now, origin, channel, maxlen
# A deployment that has had a halt record (the counter exists) is never initialised again by one person:
# deleting the record and running init was a one-person clear. A missing record reads as HALTED; lifting it
# takes the two-person clear.
_INIT = _NEXT_VERSION + """

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'version'))}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.init_refused', 'who', ARGV[1],
             'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4])
  return {-1, tonumber(redis.call('GET', KEYS[3]))}
end
local version = next_version(KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'reason', ARGV[2], 'incident_id', '', 'since', ARGV[3],
           'by', ARGV[1], 'metrics', '{}', 'version', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.init', 'who', ARGV[1],
           'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'RUNNING')
redis.call('PUBLISH', ARGV[5], cjson.encode({state='RUNNING', version=version, reason=ARGV[2], by=ARGV[1],
           since=ARGV[3], incident_id='', metrics='{}'}))
return {1, version}
"""

# KEYS: halt, audit, version counter | ARGV: by, reason, now, origin, channel, maxlen, incident_id, metrics_json
_TRIP = _NEXT_VERSION + """

local state = redis.call('HGET', KEYS[1], 'state')
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if state == 'HALTED' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.trip_repeat', 'who', ARGV[1],
             'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'HALTED',
             'incident_id', ARGV[7])
  return {0, version}
end
version = next_version(KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'state', 'HALTED', 'reason', ARGV[2], 'incident_id', ARGV[7], 'since', ARGV[3],
           'by', ARGV[1], 'metrics', ARGV[8], 'version', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.trip', 'who', ARGV[1],
           'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'HALTED',
           'incident_id', ARGV[7])
redis.call('PUBLISH', ARGV[5], cjson.encode({state='HALTED', version=version, reason=ARGV[2], by=ARGV[1],
           since=ARGV[3], incident_id=ARGV[7], metrics=ARGV[8]}))
return {1, version}
"""

# KEYS: halt, audit, approvals-prefix, version counter | ARGV: by, reason, now, origin, channel, maxlen, role,
# version. A missing record is HALTED (as the gate reads it) at the counter's version.
_APPROVE = _NEXT_VERSION + """

local state = redis.call('HGET', KEYS[1], 'state') or 'HALTED'
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or redis.call('GET', KEYS[4]) or '0')
if state ~= 'HALTED' then return {-1, version} end
if tonumber(ARGV[8]) ~= version then return {-2, version} end
local akey = KEYS[3] .. version
local other_role = 'clinical_lead'
if ARGV[7] == 'clinical_lead' then other_role = 'oncall_engineer' end
local other = redis.call('HGET', akey, other_role)
if other and cjson.decode(other)['by'] == ARGV[1] then return {-3, version} end
redis.call('HSET', akey, ARGV[7], cjson.encode({by=ARGV[1], reason=ARGV[2], at=ARGV[3], origin=ARGV[4]}))
redis.call('EXPIRE', akey, ARGV[9])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.approve_clear', 'who', ARGV[1],
           'role', ARGV[7], 'reason', ARGV[2], 'at', ARGV[3], 'origin', ARGV[4], 'version', version)
if not other then return {0, version} end
local o = cjson.decode(other)
version = next_version(KEYS[1], KEYS[4])
local reason = other_role .. ' ' .. o['by'] .. ': ' .. o['reason'] .. ' | '
               .. ARGV[7] .. ' ' .. ARGV[1] .. ': ' .. ARGV[2]
local by = o['by'] .. '+' .. ARGV[1]
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'reason', reason, 'incident_id', '', 'since', ARGV[3],
           'by', by, 'metrics', '{}', 'version', version)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'action', 'halt.clear', 'who', by,
           'reason', reason, 'at', ARGV[3], 'origin', ARGV[4], 'version', version, 'state', 'RUNNING')
redis.call('PUBLISH', ARGV[5], cjson.encode({state='RUNNING', version=version, reason=reason, by=by,
           since=ARGV[3], incident_id='', metrics='{}'}))
return {1, version}
"""


class HaltStore:
    """The halt record, its approvals and its audit trail in Redis.

    Example:
        store = HaltStore(redis.Redis.from_url(url), prefix="vigil:")
        store.trip(by="evaluator", reason="crisis recall 0.86 < 0.90", incident_id="INC-1")
    """

    def __init__(self, client: redis.Redis, prefix: str = "vigil:") -> None:
        self._r = client
        self.key = f"{prefix}halt"
        self.channel = f"{prefix}halt:changes"
        self.audit_key = f"{prefix}audit"
        self._approvals = f"{prefix}halt:approvals:"
        self.version_key = f"{prefix}halt:version"  # the last version given; outlives the record
        self._init = client.register_script(_INIT)
        self._trip = client.register_script(_TRIP)
        self._approve = client.register_script(_APPROVE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "vigil:") -> HaltStore:
        """A store on a new client for `url`."""
        return cls(connect(url, timeout_s=HALT_TIMEOUT_S), prefix)

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> list[int]:
        with store_errors("halt record not changed"):
            result = script(keys=keys, args=args)
        return [int(x) for x in result]

    def _common(self, by: str, reason: str, origin: str | None) -> list[Any]:
        if not by.strip():
            raise HaltError("a halt change needs the name of who makes it")
        return [by, reason, utcnow().isoformat(), origin or default_origin(), self.channel, _AUDIT_MAXLEN]

    def read(self) -> HaltRecord:
        """The current record; raises StoreUnavailable if Redis cannot be read."""
        with store_errors():
            record = HaltRecord.from_redis(self._r.hgetall(self.key))
            if not record.present:  # a lost record is HALTED at the last version given: clear that one
                record = dataclasses.replace(record, version=int(self._r.get(self.version_key) or 0))
            return record

    def init(self, by: str, reason: str = "initial deployment", origin: str | None = None) -> bool:
        """Set RUNNING on a deployment that never had a halt record; True when this call created it, False
        when a record exists. Raises InitRefused where a record existed and is gone: that takes the clear."""
        code, version = self._call(self._init, [self.key, self.audit_key, self.version_key],
                                   self._common(by, reason, origin))
        if code == -1:
            raise InitRefused(
                f"this deployment has had halt records (last version {version}) and the record is missing: it "
                "reads as HALTED, and lifting it takes the two-person clear (vigil halt clear), not init")
        return code == 1

    def trip(
        self,
        by: str,
        reason: str,
        incident_id: str = "",
        metrics: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> int:
        """Halt the AI (idempotent while halted); returns the halt version."""
        args = self._common(by, reason, origin) + [incident_id, json.dumps(metrics or {}, default=str)]
        _, version = self._call(self._trip, [self.key, self.audit_key, self.version_key], args)
        return version

    def approve_clear(self, by: str, role: str, reason: str, version: int, origin: str | None = None) -> bool:
        """Record one person's approval to lift halt `version`; True when this approval lifted it."""
        if role not in CLEAR_ROLES:
            raise ApprovalRefused(f"role {role!r} cannot approve a clear; roles: {', '.join(CLEAR_ROLES)}")
        if not reason.strip():
            raise ApprovalRefused("an approval needs a reason")
        args = self._common(by, reason, origin) + [role, version, APPROVAL_TTL_S]
        code, current = self._call(self._approve, [self.key, self.audit_key, self._approvals, self.version_key],
                                   args)
        if code == -1:
            raise NotHalted("the AI is not halted; nothing to clear")
        if code == -2:
            raise StaleApproval(version, current)
        if code == -3:
            raise ApprovalRefused(f"{by} already approved in the other role; a clear takes two different people")
        return code == 1

    def approvals(self, version: int) -> dict[str, dict[str, Any]]:
        """Approvals given so far for halt `version`, by role."""
        raw = self._r.hgetall(f"{self._approvals}{version}")
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def audit(self, count: int = 100) -> list[dict[str, str]]:
        """The newest audit entries, oldest first."""
        entries = self._r.xrevrange(self.audit_key, count=count)
        return [
            {"id": eid.decode(), **{k.decode(): v.decode() for k, v in fields.items()}}
            for eid, fields in reversed(entries)
        ]
