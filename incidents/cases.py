"""Urgent cases: a person at imminent risk, worked by the crisis team (issue 34, docs/design.md section 9).

A conversation at the urgent level opens one case: open -> claimed by a clinician -> closed with its outcome, with a
deadline to human contact (`cases.deadline_min`, 15 minutes). The case pages the clinical crisis rotation once
(`cases.routing` in the incidents file: its own PagerDuty routing key and Slack channel, not the P0 route),
deduplicated per conversation (`urgent_case:{conversation_id}`, which PagerDuty also groups by). `CaseWatch` looks
every few seconds: a case past its deadline with nobody having reached the person re-pages the next tier of the
rotation if nobody claimed it, and opens **the** P0, "People at risk not reached in time": the service failed that
person (one P0 while it is open; each further breach is a note on its timeline). A P1 warns when open cases exceed
what the team on shift can reach in time.

Redis (under the prefix):
- `cases:{conversation_id}`: hash, the case (state, opened_at, deadline, turn, score, why, claimed_by, claimed_at,
  contacted_at, outcome, closed_at, closed_by, breached_at, paged_at);
- `cases:open`: sorted set of open cases by deadline (epoch seconds);
- `cases:contact_s`: the last `CONTACT_SAMPLES` times from opening to contact, in seconds (the capacity rule's
  measure);
- `cases:audit`: stream of every change with who made it;
- `cases:breach-claim:{conversation_id}`: one process handles a breach.

Every change is a Lua script or a transaction: two clinicians cannot both claim a person, and a replayed urgent turn
opens nothing new.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis

from incidents.periodic import Periodic
from vigil_core import keys
from vigil_core.clock import utcnow
from vigil_core.redis_client import store_errors

__all__ = ["Case", "CaseStore", "CaseWatch", "CaseError", "case_dedup", "CASE_BREACH", "CASE_CAPACITY",
           "CONTACT_OUTCOMES", "CasePager", "capacity"]

log = logging.getLogger(__name__)

CONTACT_OUTCOMES = frozenset({"contacted", "referred", "emergency_services"})
CONTACT_SAMPLES = 50
CASE_CAPACITY = "case_capacity"  # the dedup key of the capacity P1 (one open at a time)
_AUDIT_MAXLEN = 1_000_000
# A breach is handled by one process; the claim outlives any retry round and then expires.
BREACH_CLAIM_TTL_S = 7 * 86400


def case_dedup(conversation_id: str) -> str:
    """The page's dedup key: one PagerDuty alert per person, re-pages grouped under it."""
    return f"urgent_case:{conversation_id}"


# The dedup key of the P0 opened when a case passes its deadline with nobody reaching the person: one open P0 per
# episode, each further breach a note on its timeline (when the team is overrun, twenty breaches an hour are one
# failure to fix, not twenty pages to the full team; the capacity P1 says why).
CASE_BREACH = "case_breach"


class CaseError(Exception):
    """A case change that cannot be made (no such case, claimed by someone else, closed)."""


@dataclass(frozen=True)
class Case:
    """One urgent case."""

    conversation_id: str
    state: str  # open | claimed | closed
    opened_at: str
    deadline: str
    turn: int = 0
    score: float = 0.0
    why: str = ""
    claimed_by: str = ""
    claimed_at: str = ""
    contacted_at: str = ""
    outcome: str = ""
    closed_at: str = ""
    closed_by: str = ""
    breached_at: str = ""
    paged_at: str = ""

    @property
    def id(self) -> str:
        return f"CASE-{self.conversation_id}"

    def seconds_left(self, now: datetime) -> float:
        """Seconds to the deadline (negative: past it)."""
        return (datetime.fromisoformat(self.deadline) - now).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'conversation_id', ARGV[1], 'state', 'open', 'opened_at', ARGV[2], 'deadline', ARGV[3],
           'turn', ARGV[4], 'score', ARGV[5], 'why', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'action', 'open', 'conversation_id', ARGV[1], 'by', ARGV[9])
return 1
"""
# claim / release / transfer: ARGV = cid, by, now, to, audit maxlen. Returns 'ok' or why not.
_CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'no such case' end
if state == 'closed' then return 'the case is closed' end
local holder = redis.call('HGET', KEYS[1], 'claimed_by') or ''
local op = ARGV[6]
if op == 'claim' then
  if state == 'claimed' and holder ~= ARGV[2] then return 'claimed by ' .. holder end
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'claimed_by', ARGV[2], 'claimed_at', ARGV[3])
else
  if state ~= 'claimed' or holder ~= ARGV[2] then return 'only the clinician who claimed the case can do that' end
  if op == 'release' then
    redis.call('HSET', KEYS[1], 'state', 'open', 'claimed_by', '', 'claimed_at', '')
  else
    redis.call('HSET', KEYS[1], 'claimed_by', ARGV[4], 'claimed_at', ARGV[3])
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'action', op, 'conversation_id', ARGV[1], 'by', ARGV[2],
           'to', ARGV[4])
return 'ok'
"""
_CLOSE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'no such case' end
if state == 'closed' then return 'the case is closed' end
redis.call('HSET', KEYS[1], 'state', 'closed', 'outcome', ARGV[3], 'closed_at', ARGV[4], 'closed_by', ARGV[2])
if ARGV[5] == '1' and redis.call('HSETNX', KEYS[1], 'contacted_at', ARGV[4]) == 1 then
  redis.call('LPUSH', KEYS[4], ARGV[6])
  redis.call('LTRIM', KEYS[4], 0, ARGV[7] - 1)
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'action', 'close', 'conversation_id', ARGV[1], 'by', ARGV[2],
           'outcome', ARGV[3])
return 'ok'
"""


class CaseStore:
    """The cases in Redis.

    Example:
        cases = CaseStore(client, "vigil:")
        cases.open("conv-7", turn=4, score=0.97, why="imminent phrase", by="vigil-scorer")
        cases.claim("conv-7", "dr.ana")
    """

    def __init__(self, client: redis.Redis, prefix: str, deadline: timedelta = timedelta(minutes=15),
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._r: Any = client  # bytes replies (redis-py's stubs type every reply as a union)
        self._p = f"{prefix}{keys.CASES}"
        self.deadline = deadline
        self.clock = clock
        self._open = client.register_script(_OPEN)
        self._claim = client.register_script(_CLAIM)
        self._close = client.register_script(_CLOSE)

    def _key(self, cid: str) -> str:
        return f"{self._p}{cid}"

    @property
    def open_key(self) -> str:
        return f"{self._p}open"

    @property
    def audit_key(self) -> str:
        return f"{self._p}audit"

    @property
    def contact_key(self) -> str:
        return f"{self._p}contact_s"

    def claim_breach(self, cid: str) -> bool:
        """Whether this process handles the case's breach (one process does; see `give_back_breach`)."""
        with store_errors("breach not claimed"):
            return bool(self._r.set(f"{self._p}breach-claim:{cid}", "1", nx=True, ex=BREACH_CLAIM_TTL_S))

    def give_back_breach(self, cid: str) -> None:
        """The breach was not handled: the next round (any process) handles it."""
        with store_errors("breach claim not given back"):
            self._r.delete(f"{self._p}breach-claim:{cid}")

    def open(self, cid: str, turn: int, score: float, why: str, by: str) -> tuple[Case, bool]:
        """Open the conversation's case if it has none; (the case, whether it was opened now)."""
        now = self.clock()
        deadline = now + self.deadline
        with store_errors("case not opened"):
            created = self._open(keys=[self._key(cid), self.open_key, self.audit_key], args=[
                cid, now.isoformat(), deadline.isoformat(), turn, repr(float(score)), why[:200],
                deadline.timestamp(), _AUDIT_MAXLEN, by])
        case = self.get(cid)
        assert case is not None
        return case, bool(created)

    def _change(self, op: str, cid: str, by: str, to: str = "") -> Case:
        with store_errors(f"case not changed ({op})"):
            answer = self._claim(keys=[self._key(cid), self.audit_key],
                                 args=[cid, by, self.clock().isoformat(), to, _AUDIT_MAXLEN, op])
        return self._answered(answer, cid)

    def _answered(self, answer: object, cid: str) -> Case:
        """The case after a change script's answer: `ok`, else the reason it refused (raised)."""
        said = answer.decode() if isinstance(answer, bytes) else str(answer)
        if said != "ok":
            raise CaseError(said)
        case = self.get(cid)
        assert case is not None
        return case

    def claim(self, cid: str, by: str) -> Case:
        """Take the case (so no colleague takes the same person); refused if someone else holds it."""
        return self._change("claim", cid, by)

    def release(self, cid: str, by: str) -> Case:
        """Give the case back to the team (only its holder)."""
        return self._change("release", cid, by)

    def transfer(self, cid: str, by: str, to: str) -> Case:
        """Hand the case to a colleague (only its holder)."""
        if not to or to == by:
            raise CaseError("name the colleague who takes the case")
        return self._change("transfer", cid, by, to)

    def close(self, cid: str, by: str, outcome: str) -> Case:
        """Close the case with its outcome; a contact outcome fixes the time to human contact."""
        case = self.get(cid)
        if case is None:
            raise CaseError("no such case")
        now = self.clock()
        contact_s = max(0.0, (now - datetime.fromisoformat(case.opened_at)).total_seconds())
        with store_errors("case not closed"):
            answer = self._close(keys=[self._key(cid), self.open_key, self.audit_key, self.contact_key], args=[
                cid, by, outcome, now.isoformat(), "1" if outcome in CONTACT_OUTCOMES else "0", repr(contact_s),
                CONTACT_SAMPLES, _AUDIT_MAXLEN])
        return self._answered(answer, cid)

    def get(self, cid: str) -> Case | None:
        with store_errors("case not read"):
            raw = self._r.hgetall(self._key(cid))
        return _case(raw) if raw else None

    def open_cases(self) -> list[Case]:
        """Every case not closed, riskiest first: past or nearest deadline first (the oldest), then unclaimed."""
        with store_errors("cases not read"):
            cids = [c.decode() for c in self._r.zrange(self.open_key, 0, -1)]
            pipe = self._r.pipeline(transaction=False)
            for cid in cids:
                pipe.hgetall(self._key(cid))
            rows = pipe.execute()
        cases = [_case(raw) for raw in rows if raw]
        return sorted((c for c in cases if c.state != "closed"),
                      key=lambda c: (c.deadline, c.state == "claimed", -c.score))

    def overdue(self, now: datetime) -> list[Case]:
        """Open cases past their deadline."""
        with store_errors("cases not read"):
            cids = [c.decode() for c in self._r.zrangebyscore(self.open_key, "-inf", now.timestamp())]
        return [c for c in (self.get(cid) for cid in cids) if c is not None and c.state != "closed"]

    def mark_paged(self, cid: str) -> None:
        """Record that the case's first page is queued."""
        with store_errors("case not marked"):
            self._r.hsetnx(self._key(cid), "paged_at", self.clock().isoformat())

    def mark_breached(self, cid: str, at: datetime) -> bool:
        """Record that the case passed its deadline unreached (once)."""
        with store_errors("case not marked"):
            return bool(self._r.hsetnx(self._key(cid), "breached_at", at.isoformat()))

    def contact_times(self) -> list[float]:
        """The recent times from opening to human contact, in seconds."""
        with store_errors("contact times not read"):
            return [float(v) for v in self._r.lrange(self.contact_key, 0, -1)]

    def audit(self, count: int = 100) -> list[dict[str, str]]:
        """The latest changes, newest first."""
        with store_errors("case audit not read"):
            rows = self._r.xrevrange(self.audit_key, count=count)
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]


def _case(raw: dict[bytes, bytes]) -> Case:
    d = {k.decode(): v.decode() for k, v in raw.items()}
    return Case(conversation_id=d["conversation_id"], state=d.get("state", "open"), opened_at=d["opened_at"],
                deadline=d["deadline"], turn=int(d.get("turn") or 0), score=float(d.get("score") or 0.0),
                why=d.get("why", ""), claimed_by=d.get("claimed_by", ""), claimed_at=d.get("claimed_at", ""),
                contacted_at=d.get("contacted_at", ""), outcome=d.get("outcome", ""), closed_at=d.get("closed_at", ""),
                closed_by=d.get("closed_by", ""), breached_at=d.get("breached_at", ""), paged_at=d.get("paged_at", ""))


def capacity(team_size: int, deadline_s: float, contact_times: list[float]) -> int:
    """How many people the team on shift can reach within the deadline: each clinician works one case at a time,
    each taking the median measured time to contact (half the deadline until cases have been closed)."""
    typical = statistics.median(contact_times) if contact_times else deadline_s / 2
    return team_size * max(1, int(deadline_s // max(typical, 1.0)))


class CasePager:
    """Pages of urgent cases to the crisis rotation, through the incident outbox (so they retry like pages do)."""

    def __init__(self, service: Any, link: Callable[[str], str]) -> None:
        self.service = service
        self.link = link

    def page(self, case: Case, action: str, level: int) -> None:
        config = self.service.config
        tiers = config.cases.escalation
        role = tiers[min(level, len(tiers) - 1)] if tiers else "crisis team"
        payload = {
            "action": action, "incident_id": case.id, "dedup_key": case_dedup(case.conversation_id),
            "severity": "case", "title": "Person at risk: urgent case" if level == 0 else
            "Person at risk: urgent case NOT CLAIMED by its deadline", "state": case.state, "type": "case",
            "escalation_level": level, "metrics": {"score": round(case.score, 4)}, "at": utcnow().isoformat(),
            "link": self.link(case.conversation_id), "contacts": [{"role": role, **config.roster.get(role, {})}],
            "response_time_min": config.cases.deadline_min, "team": "crisis team",
        }
        for name in config.case_routing:
            self.service.outbox.enqueue(name, payload)


class CaseWatch:
    """Every `every_s`: each case past its deadline with nobody having reached the person is re-paged (if nobody
    claimed it) and opens the P0; the capacity P1 when open cases exceed what the team can reach in time."""

    def __init__(self, cases: CaseStore, service: Any, pager: CasePager, by: str = "vigil-scorer",
                 clock: Callable[[], datetime] | None = None) -> None:
        self.cases = cases
        self.service = service
        self.pager = pager
        self.by = by
        self.clock = clock or cases.clock
        self._periodic = Periodic("case watch", self.check)

    def check(self) -> dict[str, int]:
        """One round; how many breaches it handled and whether the team is over capacity."""
        now = self.clock()
        breached = 0
        for case in self.cases.overdue(now):
            if case.breached_at or case.contacted_at or not self.cases.claim_breach(case.conversation_id):
                continue
            try:
                if case.state == "open":
                    self.pager.page(case, "escalate", 1)
                late = int(-case.seconds_left(now))
                self.service.open(
                    "P0", "People at risk not reached in time", CASE_BREACH, "safety",
                    by=self.by, detail={"rule": "case_deadline", "case": case.id,
                                        "conversation_id": case.conversation_id, "claimed_by": case.claimed_by,
                                        "state": case.state, "late_s": late, "link": self.pager.link(
                                            case.conversation_id)})
                self.cases.mark_breached(case.conversation_id, now)
            except Exception:
                self.cases.give_back_breach(case.conversation_id)
                raise
            breached += 1
            log.error("URGENT CASE %s passed its deadline with nobody reaching the person: P0 opened", case.id)
        open_cases = len(self.cases.open_cases())
        config = self.service.config.cases
        can_reach = capacity(config.team_size, config.deadline_min * 60, self.cases.contact_times())
        over = open_cases > can_reach
        if over and self.service.find_open(CASE_CAPACITY) is None:
            self.service.open("P1", "Crisis team over capacity: open urgent cases exceed what the team on shift can "
                              "reach in time", CASE_CAPACITY, "capacity", by=self.by,
                              detail={"rule": "case_capacity", "open_cases": open_cases, "capacity": can_reach,
                                      "team_size": config.team_size})
        return {"breached": breached, "open": open_cases, "capacity": can_reach, "over_capacity": int(over)}

    def start(self, every_s: float = 5.0) -> None:
        self._periodic.start(every_s)

    def stop(self) -> None:
        self._periodic.stop()
