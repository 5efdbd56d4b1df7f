"""The halt record in Redis: RUNNING or HALTED, changed atomically, announced, audited.

Rules this module enforces (docs/design.md section 5):
- a missing record reads as HALTED, so a Redis flush can never resume the AI;
- automation may trip a halt but nothing clears one except two different people, a clinical lead and
  the on-call engineer, approving the same halt version;
- the version only grows, so an approval given for an earlier halt never lifts a later one;
- every change is published on `halt:changes` and appended to the `audit` stream in the same script;
- a damaged record (issue 35: the key of another type, a state other than RUNNING or HALTED, a version that is not
  an integer below 2^53) reads as HALTED at the last version given, says what is wrong (`HaltRecord.damage`), and
  is repaired only by the audited paths: a trip writes a fresh HALTED record, the two-person clear a fresh RUNNING
  one. Versions are integers below 2^53 (JSON and Lua read them exactly).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any

import redis

from safety_gate.errors import ApprovalRefused, HaltError, InitRefused, NotHalted, StaleApproval
from safety_gate.halt_scripts import APPROVE, INIT, TRIP
from vigil_core import keys
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
    damage: tuple[str, ...] = ()  # what is wrong with the record as stored (empty: nothing)

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
        damage = []
        raw_metrics = d.get("metrics") or "{}"
        try:
            metrics = json.loads(raw_metrics)
        except ValueError:
            metrics = None
        if not isinstance(metrics, dict | list) or len(raw_metrics) > MAX_METRICS_BYTES:
            damage.append(f"metrics is not a JSON object of at most {MAX_METRICS_BYTES} bytes")
        state = d.get("state", "")
        if state not in (RUNNING, HALTED):
            damage.append(f"state {_bounded(state, 40)!r} is neither RUNNING nor HALTED")
        version = parse_version(d.get("version"))
        if version is None:
            damage.append(f"version {_bounded(d.get('version', '(none)'), 40)!r} is not an integer below 2^53")
        if len(d.get("reason", "")) > MAX_STORED_REASON_CHARS:
            damage.append(f"reason of {len(d['reason'])} characters (at most {MAX_STORED_REASON_CHARS})")
        for name in ("incident_id", "by"):
            if len(d.get(name, "")) > MAX_ID_CHARS:
                damage.append(f"{name} of {len(d[name])} characters (at most {MAX_ID_CHARS})")
        if d.get("since") and not _timestamp(d["since"]):
            damage.append("since is not an RFC 3339 time")
        # Any damage reads as HALTED (fail closed), at the counter's version (HaltStore.read); the two-person clear
        # or a trip writes a fresh record.
        untrusted = bool(damage)
        # Every field is bounded before it leaves this process (issue 35: a 1 MB reason written into the record
        # reached every gate answer while halted; a raw `since` reached the public status page).
        return cls(
            state=HALTED if untrusted else state,
            reason=_bounded("halt record damaged: " + "; ".join(damage) if untrusted else d.get("reason", ""),
                            MAX_REASON_CHARS),
            incident_id=_bounded(d.get("incident_id", ""), MAX_ID_CHARS),
            since=_timestamp(d.get("since", "")),
            by=_bounded(d.get("by", ""), MAX_ID_CHARS),
            metrics=metrics if isinstance(metrics, dict) and not untrusted else {},
            version=version or 0,
            damage=tuple(damage),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "state": self.state, "reason": self.reason, "incident_id": self.incident_id, "since": self.since,
            "by": self.by, "metrics": self.metrics, "version": self.version, "present": self.present,
            "damage": list(self.damage),
        }


# Bounds of the halt record's free-text fields as read (a person's reason is a sentence or two; ids are short).
# Written reasons are cut to MAX_WRITTEN_REASON_CHARS, so a clear's reason (both approvals' reasons, names and roles)
# stays under MAX_STORED_REASON_CHARS; a longer one was not written by Vigil: the record is damaged.
MAX_REASON_CHARS = 500
MAX_WRITTEN_REASON_CHARS = 300
MAX_STORED_REASON_CHARS = 1000
MAX_ID_CHARS = 128
MAX_METRICS_BYTES = 16_384


MAX_VERSION_DIGITS = 15  # below 10^15 < 2^53: exact as a JSON number, a Lua number and a Python int


def parse_version(value: str | bytes | None) -> int | None:
    """A halt version as stored: a non-negative integer of at most 15 digits, else None (damaged)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if value is None:
        return None
    if len(value) > MAX_VERSION_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _bounded(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, saying so."""
    return value if len(value) <= limit else value[:limit] + " [cut]"


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9:.+\-Z]+")


def _timestamp(value: str) -> str:
    """`value` if it is an RFC 3339 time (as the record's scripts write it), else empty. The same rule as the Lua
    scripts' `state_of`, plus a parse."""
    from datetime import datetime

    if len(value) > 40 or not _TIMESTAMP.fullmatch(value):
        return ""
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return value


class HaltStore:
    """The halt record, its approvals and its audit trail in Redis.

    Example:
        store = HaltStore(redis.Redis.from_url(url), prefix="vigil:")
        store.trip(by="evaluator", reason="crisis recall 0.86 < 0.90", incident_id="INC-1")
    """

    def __init__(self, client: redis.Redis, prefix: str = "vigil:") -> None:
        self._r = client
        self.key = f"{prefix}{keys.HALT}"
        self.channel = f"{prefix}{keys.HALT_CHANGES}"
        self.audit_key = f"{prefix}{keys.AUDIT}"
        self._approvals = f"{prefix}{keys.HALT_APPROVALS}"
        self.version_key = f"{prefix}{keys.HALT_VERSION}"  # the last version given; outlives the record
        self._init = client.register_script(INIT)
        self._trip = client.register_script(TRIP)
        self._approve = client.register_script(APPROVE)

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
        if len(by) > MAX_ID_CHARS:
            raise HaltError(f"a name of at most {MAX_ID_CHARS} characters")
        # cut, not refused: a trip must never fail for its wording
        reason = _bounded(reason, MAX_WRITTEN_REASON_CHARS)
        return [by, reason, utcnow().isoformat(), origin or default_origin(), self.channel, _AUDIT_MAXLEN]

    def read(self) -> HaltRecord:
        """The current record, never raising on a damaged one (it reads HALTED and says what is wrong); raises
        StoreUnavailable if Redis cannot be read."""
        with store_errors():
            kind = self._r.type(self.key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind not in ("hash", "none"):
                record = HaltRecord(state=HALTED, reason="the halt record is damaged", present=True,
                                    damage=(f"the halt key holds a {kind}, not a hash",))
            else:
                record = HaltRecord.from_redis(self._r.hgetall(self.key))
            if not record.present or record.damage:
                # a lost or damaged record is HALTED at the last version given: the clear lifts (repairs) that one
                record = dataclasses.replace(record, version=self._counter())
            return record

    def _counter(self) -> int:
        """The last version given (0 when none, or when the counter itself is damaged)."""
        try:
            raw = self._r.get(self.version_key)
        except redis.ResponseError:
            return 0  # not a string: the next version given repairs it
        return parse_version(raw) or 0

    def init(self, by: str, reason: str = "initial deployment", origin: str | None = None) -> bool:
        """Set RUNNING on a deployment that never had a halt record; True when this call created it, False
        when a record exists. Raises InitRefused where a record existed and is gone: that takes the clear."""
        code, version = self._call(self._init, [self.key, self.audit_key, self.version_key],
                                   self._common(by, reason, origin))
        if code == -2:
            raise InitRefused("the halt record is damaged (vigil halt status says how): it reads as HALTED; "
                              "repair it with the two-person clear (vigil halt clear), which writes a fresh record")
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
        metrics_json = json.dumps(metrics or {}, default=str)
        if len(metrics_json) > MAX_METRICS_BYTES:  # kept within the bound the readers check, so never "damaged"
            metrics_json = json.dumps({"omitted": f"{len(metrics_json)} bytes of metrics"})
        args = self._common(by, reason, origin) + [incident_id[:MAX_ID_CHARS], metrics_json]
        _, version = self._call(self._trip, [self.key, self.audit_key, self.version_key], args)
        return version

    def approve_clear(self, by: str, role: str, reason: str, version: int, origin: str | None = None,
                      accounts_prefix: str | None = None) -> bool:
        """Record one person's approval to lift halt `version`; True when this approval lifted it. With
        `accounts_prefix` (the review app's accounts, `{prefix}users:`), the other role's approval counts only if
        its account is still enabled in that role at this moment; else it is void (audited) and this approval
        waits for a new one."""
        if role not in CLEAR_ROLES:
            raise ApprovalRefused(f"role {role!r} cannot approve a clear; roles: {', '.join(CLEAR_ROLES)}")
        if not reason.strip():
            raise ApprovalRefused("an approval needs a reason")
        args = self._common(by, reason, origin) + [role, version, APPROVAL_TTL_S,
                                                    "1" if accounts_prefix else "0", accounts_prefix or ""]
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
