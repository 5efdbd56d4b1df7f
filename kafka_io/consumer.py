"""Consumers built from Settings, their lag, reading a whole topic, and rewinding after a failed batch.

Lag is computed from `consumer.highwater()`: tansu reports wrong `end_offsets()` after batched produces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from vigil_core.settings import Settings

__all__ = ["make_consumer", "consumer_lag", "read_all", "rewind_to_committed"]

log = logging.getLogger(__name__)


def make_consumer(settings: Settings, group: str | None, topics: Iterable[str], **overrides: Any) -> KafkaConsumer:
    """A manually committed consumer subscribed to `topics` in `group` (None: no group, no commits)."""
    config: dict[str, Any] = {
        **settings.kafka_client_config(),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_poll_records": settings.batch_size,
        "max_poll_interval_ms": 300000,
    }
    listener = overrides.pop("listener", None)
    config.update(overrides)
    consumer = KafkaConsumer(**config)
    topics = list(topics)
    if topics:
        if listener is not None:
            consumer.subscribe(topics=topics, listener=listener)
        else:
            consumer.subscribe(topics=topics)
    return consumer


def consumer_lag(consumer: KafkaConsumer) -> dict[TopicPartition, int]:
    """Records not yet consumed per assigned partition, from `highwater()` (see module docstring)."""
    lag: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            pos = consumer.position(tp, timeout_ms=1000)
        except KafkaError:
            continue
        if pos is not None:
            lag[tp] = max(0, high - pos)
    return lag


def read_all(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record of `topic` now in the log (no consumer group), in partition order.

    Reads until each partition's highwater mark (not `end_offsets()`, which this broker misreports).
    """
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False,
                             fetch_max_wait_ms=settings.fetch_max_wait_ms, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        done: set[TopicPartition] = set()
        quiet = 0
        while time.monotonic() < deadline and len(done) < len(tps):
            got = consumer.poll(timeout_ms=200)
            for recs in got.values():
                out.extend(recs)
            quiet = 0 if got else quiet + 1
            for tp in tps:
                high = consumer.highwater(tp)
                if high is not None and consumer.position(tp) >= high:
                    done.add(tp)
            if quiet >= 5 and not got:
                # A partition that never returned a fetch has no highwater: done if it is empty. A slow broker
                # (tansu's s3 engine) can take seconds to answer a partition's first fetch: not empty, wait.
                silent = [tp for tp in tps if tp not in done and consumer.highwater(tp) is None]
                if silent:
                    ends, starts = consumer.end_offsets(silent), consumer.beginning_offsets(silent)
                    done.update(tp for tp in silent if ends.get(tp, 0) <= starts.get(tp, 0))
        return out
    finally:
        consumer.close()


def rewind_to_committed(consumer: KafkaConsumer) -> None:
    """Seek every assigned partition back to its last commit, after a batch that did not complete.

    Nothing of the failed batch was committed; without the seek this consumer would skip its records.
    """
    try:
        for tp in consumer.assignment():
            committed = consumer.committed(tp)
            consumer.seek(tp, committed if committed is not None else 0)
    except Exception as exc:  # noqa: BLE001 - a broken broker connection; the group will reset us
        log.warning("could not rewind after a failed batch: %s", type(exc).__name__)
