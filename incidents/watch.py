"""The watch on the evaluator, run by every scorer process: a silent evaluator opens a P1.

Not a halt: the evaluator measures recall after the fact, from clinicians' labels that arrive hours later, so
its absence does not make the next reply less safe: the scorer still flags crises and reviewers still get them.
Stopping every user's support for a monitoring outage would do more harm than the outage. What is lost is the
alarm that recall has fallen, so people are paged (P1, within the hour) to bring it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from incidents.periodic import Periodic
from safety_gate.heartbeat import heartbeat_key
from vigil_core.settings import Settings

__all__ = ["EvaluatorWatch", "EVALUATOR_DOWN"]

log = logging.getLogger(__name__)

EVALUATOR_DOWN = "evaluator-down"
ACTOR = "vigil-scorer"


class EvaluatorWatch:
    """Opens one P1 (through `open_incident`, deduplicated across scorer replicas) while the evaluator's
    heartbeat is missing, after a grace of one heartbeat TTL from this watch's start.

    Example:
        watch = EvaluatorWatch(settings, client, service.open, service.find_open)
        watch.start()
    """

    def __init__(self, settings: Settings, client: redis.Redis, open_incident: Callable[..., object],
                 find_open: Callable[[str], str | None], clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._r = client
        self._open = open_incident
        self._find_open = find_open
        self._clock = clock
        self._started = clock()
        self._key = heartbeat_key(settings.redis_prefix, "evaluator")
        self._periodic = Periodic("evaluator watch", self.check)

    def check(self) -> bool:
        """One look; True when the evaluator is silent (and the P1 is open)."""
        if self._clock() - self._started < self.settings.evaluator_heartbeat_ttl_s:
            return False
        if self._r.exists(self._key):
            return False
        if self._find_open(EVALUATOR_DOWN) is None:
            log.error("evaluator heartbeat missing: crisis recall is not being measured")
            self._open("P1", "Evaluator down: crisis recall is not being measured and no recall alert can fire",
                       EVALUATOR_DOWN, "monitoring", by=ACTOR,
                       detail={"rule": "evaluator_heartbeat", "ttl_s": self.settings.evaluator_heartbeat_ttl_s})
        return True

    def start(self, every_s: float | None = None) -> None:
        """Look every `every_s` seconds (default: a quarter of the heartbeat TTL) in a daemon thread."""
        self._periodic.start(every_s or self.settings.evaluator_heartbeat_ttl_s / 4)

    def stop(self) -> None:
        """Stop looking."""
        self._periodic.stop()
