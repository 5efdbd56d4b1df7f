"""The review-request consumer: `safety.review` into the review queue, in the review app's process.

At least once, like every consumer of Vigil: a batch is committed only once every request of it is stored;
a request that is not valid goes to the dead-letter topic with its reason (never skipped in silence); one that
cannot be stored however often it is tried goes there too, and the partition moves on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka_io import serve
from kafka_io.dead_letters import dead_letter_out
from review.queue import ReviewQueue
from vigil_core.contracts import REVIEW_SCHEMAS, ReviewRequest, parse_event
from vigil_core.errors import ContractError
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["consume_review_requests"]

log = logging.getLogger(__name__)

# How long to wait before joining the group again after the broker could not be reached at all.
RETRY_AFTER_S = 1.0


def consume_review_requests(settings: Settings, queue: ReviewQueue, stop: threading.Event) -> None:
    """Add every review request to the queue until `stop` is set (adding one twice changes nothing).

    While it consumes, the review app beats (`heartbeat:review`): the gate's public status (/v1/status) reads
    clinical review as degraded without it."""
    from safety_gate.heartbeat import Heartbeat
    from vigil_core.redis_client import connect

    heartbeat = Heartbeat(connect(settings.redis_url.get_secret_value()), settings.redis_prefix, "review",
                          settings.heartbeat_ttl_s)
    last_beat = [0.0]

    def beat(_: bool) -> None:
        now = time.monotonic()
        if now - last_beat[0] >= settings.heartbeat_interval_s:
            try:
                heartbeat.beat()
                last_beat[0] = now
            except Exception as exc:  # noqa: BLE001 - a missed beat shows as degraded; consuming goes on
                log.warning("review heartbeat: %s", type(exc).__name__)

    def handle(records: list[Any]) -> list[OutRecord]:
        dead: list[OutRecord] = []
        for rec in records:
            try:
                event = parse_event(rec.value, accept=REVIEW_SCHEMAS)
            except ContractError as exc:
                dead.append(dead_letter_out(settings, exc.reason, rec))
                log.warning("invalid review request at %s/%d@%d sent to the dead-letter topic: %s", rec.topic,
                            rec.partition, rec.offset, exc.field)
                continue
            if isinstance(event, ReviewRequest):
                queue.add(event)
        return dead

    while not stop.is_set():
        try:
            serve(settings, settings.review_group, [settings.topic_review], handle, stop=stop,
                  what="review requests", on_cycle=beat)
        except Exception as exc:  # noqa: BLE001 - no broker at start: try again, the app keeps serving
            log.warning("review consumer: %s", type(exc).__name__)
            stop.wait(RETRY_AFTER_S)
