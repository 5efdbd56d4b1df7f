"""The review queue in Redis: items from `safety.review`, claims that expire, blind double labelling,
and adjudication of disagreements by a clinical lead.

Order: urgent conversations first (a person at imminent risk; oldest first), then flagged (highest score first),
then borderline, then sampled. Each item has a deadline: its request time plus the response time of its kind
(urgent: the P0 response time, 15 min; flagged: 1 h; borderline and sampled: 24 h). At least 20% of
items (a hash of the conversation id) and every item first labelled moderate or above go to a second
reviewer, who does not see the first label; when the two disagree on the level, the item goes to a
clinical lead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis

from pipeline.sampling import uniform_from_id
from vigil_core import keys
from vigil_core.contracts import CRISIS_LEVELS, ClinicianLabel, ReviewRequest

__all__ = ["ReviewQueue", "QueueItem", "DOUBLE_FRACTION"]

DOUBLE_FRACTION = 0.2
# language: a conversation in a language the model cannot read (issue 32) ranks with the borderline ones: its low
# score says nothing, as theirs says little.
# warning_sign: a warning sign the model scored low (giving things away, a goodbye; issue 31) is read as a flagged
# conversation is: a person may be at risk behind it.
_REASON_RANK = {"urgent": -1, "flagged": 0, "warning_sign": 0, "disagreement": 1, "borderline": 1, "language": 1,
                "sampled": 2}
# How soon a clinician must look at an item of each kind (urgent: the P0 response time).
REVIEW_DEADLINE = {"urgent": timedelta(minutes=15), "flagged": timedelta(hours=1), "warning_sign": timedelta(hours=1),
                   "disagreement": timedelta(hours=24), "borderline": timedelta(hours=24),
                   "language": timedelta(hours=24),
                   "sampled": timedelta(hours=24)}
_URGENT_BASE = -1e11  # urgent items sort below every other rank, by request time (oldest first)

# Claim the first unclaimed item the reviewer may label (not one they labelled already).
_CLAIM = """
local ids = redis.call('ZRANGE', KEYS[1], 0, 199)
for _, cid in ipairs(ids) do
  local ckey = KEYS[2] .. cid
  local holder = redis.call('GET', ckey)
  if (not holder or holder == ARGV[1]) and redis.call('SISMEMBER', KEYS[3] .. cid, ARGV[1]) == 0 then
    local stage = redis.call('HGET', KEYS[4] .. cid, 'stage')
    if stage ~= 'adjudication' or ARGV[3] == '1' then
      redis.call('SET', ckey, ARGV[1], 'EX', ARGV[2])
      return cid
    end
  end
end
return false
"""


@dataclass
class QueueItem:
    """One conversation awaiting review."""

    conversation_id: str
    request: dict[str, Any]
    stage: str  # first | second | adjudication | done
    labels: list[dict[str, Any]]

    @property
    def reason(self) -> str:
        """Why it is in review."""
        return str(self.request.get("reason", ""))

    @property
    def max_score(self) -> float:
        """The conversation's highest score."""
        return float(self.request.get("max_score", 0.0))

    @property
    def requested_at(self) -> datetime:
        """When the scorer asked for the review."""
        return datetime.fromisoformat(str(self.request["requested_at"]).replace("Z", "+00:00"))

    @property
    def deadline(self) -> datetime:
        """When a clinician must have looked at it."""
        return self.requested_at + REVIEW_DEADLINE.get(self.reason, timedelta(hours=24))

    def age_s(self, now: datetime) -> float:
        """Seconds since the request."""
        return (now - self.requested_at).total_seconds()

    def overdue(self, now: datetime) -> bool:
        """Past its deadline and not yet labelled."""
        return self.stage != "done" and now > self.deadline


class ReviewQueue:
    """Queue operations; every method is safe to call from several app processes."""

    def __init__(self, client: redis.Redis, prefix: str = "vigil:", claim_ttl_s: int = 900) -> None:
        self._r = client
        self._p = f"{prefix}{keys.REVIEW}"
        self.queue_key = self._p + "queue"
        self.claim_ttl_s = claim_ttl_s
        self._claim = client.register_script(_CLAIM)

    def _item_key(self, cid: str) -> str:
        return f"{self._p}item:{cid}"

    def add(self, request: ReviewRequest) -> None:
        """Add or update an item from a review request (idempotent; a flagged request outranks a sampled one)."""
        cid = request.conversation_id
        key = self._item_key(cid)
        current = self._r.hget(key, "request")
        if current is not None:
            old = json.loads(current)
            if _REASON_RANK.get(old["reason"], 9) < _REASON_RANK[request.reason] and len(old["turns"]) >= len(
                    request.turns):
                return
        if self._r.hget(key, "stage") in (b"done",):
            return
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(key, mapping={"request": json.dumps(request.to_dict())})
        pipe.hsetnx(key, "stage", "first")
        if request.reason == "urgent":
            rank = _URGENT_BASE + request.requested_at.timestamp()
        else:
            rank = _REASON_RANK[request.reason] * 10 + (1.0 - request.max_score)
        pipe.zadd(self.queue_key, {cid: rank})
        pipe.execute()

    def get(self, cid: str) -> QueueItem | None:
        """An item with its labels."""
        raw = self._r.hgetall(self._item_key(cid))
        if not raw or b"request" not in raw:
            return None
        labels = [json.loads(v) for k, v in sorted(raw.items()) if k.startswith(b"label:")]
        return QueueItem(cid, json.loads(raw[b"request"]), raw.get(b"stage", b"first").decode(), labels)

    def pending(self, limit: int = 100) -> list[QueueItem]:
        """Items in queue order."""
        items = []
        for raw in self._r.zrange(self.queue_key, 0, limit - 1):
            item = self.get(raw.decode())
            if item is not None:
                items.append(item)
        return items

    def claim(self, reviewer: str, may_adjudicate: bool) -> str | None:
        """Claim the next item for `reviewer` (expires after claim_ttl_s); its conversation id, or None."""
        got = self._claim(keys=[self.queue_key, self._p + "claim:", self._p + "labelled:", self._p + "item:"],
                          args=[reviewer, self.claim_ttl_s, "1" if may_adjudicate else "0"])
        return got.decode() if got else None

    def claimed_by(self, cid: str) -> str | None:
        """Who holds the claim on an item."""
        raw = self._r.get(f"{self._p}claim:{cid}")
        return raw.decode() if raw else None

    def can_label(self, cid: str, reviewer: str, may_adjudicate: bool) -> bool:
        """Whether `reviewer` may label this item now."""
        item = self.get(cid)
        if item is None or item.stage == "done":
            return False
        if any(lab["reviewer_id"] == reviewer for lab in item.labels):
            return False  # a second label must come from another person
        if item.stage == "adjudication" and not may_adjudicate:
            return False
        return self.claimed_by(cid) in (None, reviewer)

    def visible_labels(self, item: QueueItem, viewer: str, may_adjudicate: bool) -> list[dict[str, Any]]:
        """Labels a viewer may see: a second reviewer sees none (blind); a clinical lead adjudicating sees all."""
        if item.stage == "adjudication" and may_adjudicate:
            return item.labels
        return [lab for lab in item.labels if lab["reviewer_id"] == viewer]

    def record(self, label: ClinicianLabel) -> str:
        """Store a published label and move the item on; returns the new stage."""
        cid = label.conversation_id
        item = self.get(cid)
        if item is None:
            return "unknown"
        if any(old.get("label_id") == label.label_id for old in item.labels):
            return item.stage  # recorded already (a replay): nothing moves
        labels = item.labels + [label.to_dict()]
        if item.stage == "first":
            needs_second = label.level in CRISIS_LEVELS or uniform_from_id(cid, "vigil-double-v1") < DOUBLE_FRACTION
            stage = "second" if needs_second else "done"
        elif item.stage == "second":
            stage = "done" if labels[0]["level"] == labels[1]["level"] else "adjudication"
        else:
            stage = "done"
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._item_key(cid), mapping={f"label:{len(labels):02d}": json.dumps(label.to_dict()),
                                                "stage": stage})
        pipe.sadd(f"{self._p}labelled:{cid}", label.reviewer_id)
        pipe.delete(f"{self._p}claim:{cid}")
        if stage == "done":
            pipe.zrem(self.queue_key, cid)
        pipe.execute()
        return stage
