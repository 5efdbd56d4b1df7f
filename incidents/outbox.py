"""A durable outbox for notifications in Redis: a send is recorded before it is tried, retried with
backoff until it succeeds, and survives a restart of the process. A failing or slow notifier never
loses or delays an incident, and never blocks the halt (the halt is tripped before anything is queued).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from incidents.notifiers import Notification, Notifier, NotifyError
from incidents.periodic import Periodic
from vigil_core import keys

__all__ = ["Outbox"]

log = logging.getLogger(__name__)

# Take a due entry for `lease` seconds: if this process dies mid-send, the lease runs out and another
# dispatcher (or this one after a restart) sends it again. At-least-once; receivers dedupe by dedup_key.
# The log of delivered notifications keeps the newest this many: weeks of incidents at any plausible rate, for
# "was the page sent?" questions, while its size in Redis stays bounded.
SENT_LOG_LENGTH = 10_000
_LEASE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


class Outbox:
    """Queue notifications per notifier; `dispatch_due()` sends what is due (or a thread does)."""

    def __init__(self, client: redis.Redis, prefix: str, notifiers: dict[str, Notifier],
                 clock: Callable[[], float] = time.time, base_delay_s: float = 1.0, max_delay_s: float = 300.0,
                 lease_s: float = 60.0) -> None:
        self._r = client
        self.due_key = f"{prefix}{keys.NOTIFY}due"
        self.entries_key = f"{prefix}{keys.NOTIFY}entries"
        self.sent_key = f"{prefix}{keys.NOTIFY}sent"
        self.notifiers = notifiers
        self._clock = clock
        self._base, self._max, self._lease_s = base_delay_s, max_delay_s, lease_s
        self._lease = client.register_script(_LEASE)
        self._dispatcher = Periodic("outbox", self.dispatch_due)

    def enqueue(self, notifier: str, notification: Notification) -> str:
        """Record a send (durable at once); returns the entry id."""
        entry_id = uuid.uuid4().hex
        entry = {"id": entry_id, "notifier": notifier, "notification": notification, "attempts": 0,
                 "created": self._clock()}
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self.entries_key, entry_id, json.dumps(entry, default=str))
        pipe.zadd(self.due_key, {entry_id: self._clock()})
        pipe.execute()
        return entry_id

    def pending(self) -> list[dict[str, Any]]:
        """Entries not yet delivered."""
        return [json.loads(v) for v in self._r.hvals(self.entries_key)]

    def dispatch_due(self, limit: int = 50) -> int:
        """Send every due entry once; returns how many were delivered."""
        now = self._clock()
        delivered = 0
        for raw_id in self._r.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit):
            entry_id = raw_id.decode()
            if not self._lease(keys=[self.due_key], args=[entry_id, now, now + self._lease_s]):
                continue
            raw = self._r.hget(self.entries_key, entry_id)
            if raw is None:
                self._r.zrem(self.due_key, entry_id)
                continue
            entry = json.loads(raw)
            notifier = self.notifiers.get(entry["notifier"])
            try:
                if notifier is None:
                    raise NotifyError(f"notifier {entry['notifier']!r} is not configured")
                notifier.send(entry["notification"])
            except (NotifyError, Exception) as exc:  # noqa: BLE001 - any failure is retried
                entry["attempts"] += 1
                # a notifier says what failed without its credential; anything else is named by its type alone
                entry["last_error"] = str(exc)[:300] if isinstance(exc, NotifyError) else type(exc).__name__
                delay = min(self._max, self._base * 2 ** (entry["attempts"] - 1))
                pipe = self._r.pipeline(transaction=True)
                pipe.hset(self.entries_key, entry_id, json.dumps(entry, default=str))
                pipe.zadd(self.due_key, {entry_id: now + delay})
                pipe.execute()
                log.warning("notifier %s failed (attempt %d, retry in %.0f s): %s", entry["notifier"],
                            entry["attempts"], delay, type(exc).__name__)
                continue
            pipe = self._r.pipeline(transaction=True)
            pipe.zrem(self.due_key, entry_id)
            pipe.hdel(self.entries_key, entry_id)
            pipe.rpush(self.sent_key, json.dumps({"notifier": entry["notifier"], "at": self._clock(),
                                                  "incident_id": entry["notification"].get("incident_id"),
                                                  "action": entry["notification"].get("action"),
                                                  "attempts": entry["attempts"] + 1}))
            pipe.ltrim(self.sent_key, -SENT_LOG_LENGTH, -1)
            pipe.execute()
            delivered += 1
        return delivered

    def start(self, interval_s: float = 0.5) -> None:
        """Dispatch in a background thread (a round that fails, Redis away, is logged and the next one runs)."""
        self._dispatcher.start(interval_s, at_once=True)

    def stop(self) -> None:
        """Stop the dispatcher thread."""
        self._dispatcher.stop()


class OutboxCollector:
    """The notification outbox at scrape time: entries not yet delivered and the oldest one's age (a page that
    cannot be delivered must itself be seen)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def collect(self) -> Any:
        """Yield the outbox's metric families."""
        from prometheus_client.core import GaugeMetricFamily

        pending = self._outbox.pending()
        now = time.time()
        depth = GaugeMetricFamily("vigil_outbox_entries", "notifications not yet delivered")
        depth.add_metric([], float(len(pending)))
        yield depth
        age = GaugeMetricFamily("vigil_outbox_oldest_age_seconds", "age of the oldest undelivered notification")
        age.add_metric([], max((now - float(e.get("created", now)) for e in pending), default=0.0))
        yield age
