"""The review-request consumer: `safety.review` into the review queue, in the review app's process."""

from __future__ import annotations

import logging
import threading

from pipeline.kafka_io import make_consumer
from review.queue import ReviewQueue
from vigil_core.contracts import ReviewRequest, parse_event
from vigil_core.errors import VigilError
from vigil_core.settings import Settings

__all__ = ["consume_review_requests"]

log = logging.getLogger(__name__)

# How long one poll waits for review requests, and how long to wait after a broker or Redis failure.
POLL_TIMEOUT_MS = 500
RETRY_AFTER_S = 1.0


def consume_review_requests(settings: Settings, queue: ReviewQueue, stop: threading.Event) -> None:
    """Add every review request to the queue until `stop` is set (adding one twice changes nothing)."""
    consumer = None
    while not stop.is_set():
        try:
            if consumer is None:
                consumer = make_consumer(settings, settings.review_group, [settings.topic_review])
            for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                for rec in records:
                    try:
                        event = parse_event(rec.value, accept=frozenset({"safety.review_request/1"}))
                    except VigilError:
                        continue
                    if isinstance(event, ReviewRequest):
                        queue.add(event)
                consumer.commit()
        except Exception as exc:  # noqa: BLE001 - keep consuming after broker or Redis trouble
            log.warning("review consumer: %s", exc)
            stop.wait(RETRY_AFTER_S)
    if consumer is not None:
        consumer.close()
