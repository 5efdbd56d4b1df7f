"""What a clinician did for a person at risk, and the numbers it feeds (issue 22).

An outcome is one of `OUTCOMES`; the first one that means a person reached the user (contacted, referred,
emergency services) fixes the time from flag to human contact. Redis: `review:outcome:{cid}` (hash: the latest
outcome and the first contact), `review:outcomes` (stream: every record). Prometheus, from the review app:
`vigil_review_outcomes_total{outcome}` (the professional referral rate is referred + emergency over all) and
`vigil_flag_to_human_contact_seconds` (p50/p95 in Grafana).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram

from vigil_core import keys
from vigil_core.build import register_build_info
from vigil_core.clock import utcnow
from vigil_core.redis_client import store_errors

__all__ = ["OUTCOMES", "CONTACT_OUTCOMES", "REFERRAL_OUTCOMES", "OutcomeStore", "ReviewMetrics", "Outcome"]

OUTCOMES = {
    "contacted": "a clinician contacted the person",
    "referred": "referred to a professional service",
    "emergency_services": "emergency services called",
    "no_action_needed": "no action needed",
}
CONTACT_OUTCOMES = frozenset({"contacted", "referred", "emergency_services"})
REFERRAL_OUTCOMES = frozenset({"referred", "emergency_services"})


class ReviewMetrics:
    """The review app's Prometheus metrics (served by `vigil review serve --metrics-port`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        register_build_info(self.registry)
        self.outcomes = Counter("vigil_review_outcomes", "outcomes recorded by clinicians", ["outcome"],
                                registry=self.registry)
        self.flag_to_contact = Histogram(
            "vigil_flag_to_human_contact_seconds", "from the review request (the flag) to the first human contact",
            buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400), registry=self.registry)
        for outcome in OUTCOMES:
            self.outcomes.labels(outcome)


@dataclass(frozen=True)
class Outcome:
    """The latest outcome of a conversation."""

    outcome: str
    by: str
    at: str
    first_contact_at: str = ""


class OutcomeStore:
    """Record outcomes; the first human contact of a conversation is kept once."""

    def __init__(self, client: redis.Redis, prefix: str, metrics: ReviewMetrics | None = None) -> None:
        self._r = client
        self._p = f"{prefix}{keys.REVIEW}"
        self.metrics = metrics or ReviewMetrics()

    def record(self, cid: str, outcome: str, by: str, note: str, flagged_at: datetime | None) -> Outcome:
        """Record what was done; returns the conversation's outcome now."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        now = utcnow()
        key = f"{self._p}outcome:{cid}"
        with store_errors("outcome not recorded"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(key, mapping={"outcome": outcome, "by": by, "at": now.isoformat()})
            if outcome in CONTACT_OUTCOMES:
                pipe.hsetnx(key, "first_contact_at", now.isoformat())
            pipe.xadd(f"{self._p}outcomes", {"conversation_id": cid, "outcome": outcome, "by": by,
                                              "note": note[:2000], "at": now.isoformat()},
                      maxlen=1_000_000, approximate=True)
            first_contact_new = pipe.execute()[1] if outcome in CONTACT_OUTCOMES else 0
        self.metrics.outcomes.labels(outcome).inc()
        if first_contact_new and flagged_at is not None:
            self.metrics.flag_to_contact.observe(max(0.0, (now - flagged_at).total_seconds()))
        current = self.get(cid)
        assert current is not None
        return current

    def get(self, cid: str) -> Outcome | None:
        """The conversation's latest outcome, if any."""
        with store_errors("outcome not read"):
            raw = self._r.hgetall(f"{self._p}outcome:{cid}")
        if not raw:
            return None
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return Outcome(d["outcome"], d.get("by", ""), d.get("at", ""), d.get("first_contact_at", ""))


class QueueCollector:
    """The review queue at scrape time, per reason: items waiting, the oldest one's age and how many are past their
    clinical deadline (urgent 15 min, flagged 1 h, the rest 24 h): the alert on conversations waiting too long."""

    def __init__(self, queue: Any, limit: int = 5000) -> None:
        self._queue = queue
        self._limit = limit

    def collect(self) -> Any:
        """Yield the queue's metric families."""
        from datetime import UTC, datetime

        from prometheus_client.core import GaugeMetricFamily

        from review.queue import REVIEW_DEADLINE

        now = datetime.now(UTC)
        reasons = sorted(set(REVIEW_DEADLINE) | {"sampled"})
        items = {r: 0.0 for r in reasons}
        oldest = {r: 0.0 for r in reasons}
        overdue = {r: 0.0 for r in reasons}
        for item in self._queue.pending(self._limit):
            if item.stage == "done":
                continue
            reason = item.reason if item.reason in items else "sampled"
            items[reason] += 1
            oldest[reason] = max(oldest[reason], item.age_s(now))
            overdue[reason] += item.overdue(now)
        for name, doc, values in (
                ("vigil_review_queue_items", "conversations waiting for review", items),
                ("vigil_review_queue_oldest_age_seconds", "age of the oldest waiting conversation", oldest),
                ("vigil_review_queue_overdue_items", "waiting conversations past their clinical deadline", overdue)):
            family = GaugeMetricFamily(name, doc, labels=["reason"])
            for reason, value in values.items():
                family.add_metric([reason], value)
            yield family
