"""Kafka helpers built from Settings: a producer that confirms delivery, consumers, topics, lag.

Two facts of the test broker (tansu) and kafka-python 3 are handled here so nothing else has to:
- lag is computed from `consumer.highwater()`: tansu reports wrong `end_offsets()` after batched produces;
- an idempotent producer is recreated on UnknownProducerIdError / OutOfOrderSequenceNumberError, which
  every send raises after a broker restart loses the producer state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
)
from kafka.structs import OffsetAndMetadata

from vigil_core.errors import BrokerUnavailable, StoreUnavailable
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["OutRecord", "RecordProducer", "make_consumer", "consumer_lag", "ensure_topics", "all_topics", "read_all",
           "rewind_to_committed", "consume", "serve", "Pending"]

log = logging.getLogger(__name__)

_PRODUCER_STATE_LOST = (UnknownProducerIdError, OutOfOrderSequenceNumberError)


class RecordProducer:
    """A producer whose `send_all` returns only once the broker acknowledged every record.

    Example:
        producer = RecordProducer(settings)
        producer.send_all([OutRecord("safety.scores", "conv-1", b"{...}")])
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._settings = settings
        self._config: dict[str, Any] = {
            "bootstrap_servers": settings.kafka_bootstrap.split(","),
            "acks": "all",
            "linger_ms": 2,
            "retries": 5,
            "request_timeout_ms": 15000,
            "compression_type": None,
        }
        self._config.update(overrides)
        self._producer: KafkaProducer | None = None

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(**self._config)
            except KafkaError as exc:
                raise BrokerUnavailable(f"cannot create producer: {exc}") from exc
        return self._producer

    def recreate(self) -> None:
        """Drop the current producer (and its lost idempotence state); the next send makes a new one."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # noqa: BLE001 - closing a broken producer may fail in many ways
                log.debug("closing a broken producer failed", exc_info=True)
            self._producer = None

    def send_all(self, records: Sequence[OutRecord], timeout_s: float | None = None) -> None:
        """Publish records and wait for every acknowledgement; raise BrokerUnavailable if that fails.

        Records of one key keep their order. A retry after a lost producer state may duplicate a
        record: consumers are idempotent per event id, so that is safe, while losing one is not.
        """
        if not records:
            return
        deadline = time.monotonic() + (timeout_s or self._settings.produce_timeout_s)
        pending = list(records)
        attempt = 0
        while pending:
            attempt += 1
            producer = self._get()
            futures = []
            try:
                for r in pending:
                    key = None if r.key is None else r.key.encode("utf-8")
                    futures.append(
                        producer.send(r.topic, key=key, value=r.value, headers=list(r.headers) or None)
                    )
                producer.flush(timeout=max(0.1, deadline - time.monotonic()))
            except _PRODUCER_STATE_LOST:
                self.recreate()
                continue
            except KafkaTimeoutError as exc:
                self.recreate()
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(f"send not acknowledged in time: {exc}") from exc
                continue
            failed: list[OutRecord] = []
            lost_state = False
            for r, fut in zip(pending, futures, strict=True):
                try:
                    fut.get(timeout=max(0.1, deadline - time.monotonic()))
                except _PRODUCER_STATE_LOST:
                    lost_state = True
                    failed.append(r)
                except KafkaError as exc:
                    log.warning("send to %s failed (attempt %d): %s", r.topic, attempt, type(exc).__name__)
                    failed.append(r)
            if failed and (lost_state or attempt > 1):
                self.recreate()
            pending = failed
            if pending and time.monotonic() >= deadline:
                raise BrokerUnavailable(f"{len(pending)} records not acknowledged in time")
            if pending:
                time.sleep(min(1.0, 0.05 * 2**attempt))

    def close(self) -> None:
        """Flush and close."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            finally:
                self._producer = None


def make_consumer(settings: Settings, group: str | None, topics: Iterable[str], **overrides: Any) -> KafkaConsumer:
    """A manually committed consumer subscribed to `topics` in `group` (None: no group, no commits)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
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


def all_topics(settings: Settings) -> list[str]:
    """Every topic Vigil reads or writes."""
    return [
        settings.topic_events,
        settings.topic_scores,
        settings.topic_review,
        settings.topic_labels,
        settings.topic_dlq,
        settings.topic_incidents,
    ]


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None, partitions: int | None = None) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name=t, num_partitions=partitions or settings.topic_partitions, replication_factor=1)
            for t in (topics or all_topics(settings))
            if t not in existing
        ]
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic])
    finally:
        admin.close()


def read_all(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record of `topic` now in the log (no consumer group), in partition order.

    Reads until each partition's highwater mark (not `end_offsets()`, which this broker misreports).
    """
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","), enable_auto_commit=False,
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
                # partitions that never returned a fetch have no highwater: an empty partition
                done.update(tp for tp in tps if consumer.highwater(tp) is None)
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


class Pending(Protocol):
    """A batch handed to `on_records` that finishes later, while the next batch is being scored."""

    def waiting(self) -> bool:
        """True while a handed-over batch is not finished (outputs acked, state written, committed)."""
        ...

    def flush(self) -> None:
        """Finish the waiting batch now (raises like `on_records`)."""
        ...

    def discard(self) -> None:
        """Forget the waiting batch after a failure: the consumer is rewound and its records come again."""
        ...


def consume(
    consumer: KafkaConsumer,
    stop: threading.Event,
    on_records: Callable[[list[Any]], None],
    *,
    poll_timeout_ms: int,
    max_records: int,
    on_cycle: Callable[[bool], None] | None = None,
    max_idle_s: float | None = None,
    what: str = "batch",
    pending: Pending | None = None,
) -> None:
    """The at-least-once consumer loop of the scorer and the evaluator.

    `on_records` must finish (outputs acknowledged, state written, offsets committed) or raise; on a
    broker or Redis failure the consumer is rewound to its last commit and the records come again.
    With `pending`, `on_records` may instead leave its batch waiting and finish it during the next call
    (the scorer finishes batch N while the model scores batch N+1): the loop then polls without waiting,
    flushes the batch at once when no further records are ready, and before it leaves. Periodic work
    (`on_cycle(had_records)`) runs only when nothing is waiting. With `max_idle_s`, the loop ends once the
    consumer has partitions and has seen no record for that long (replays, tests).
    """
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            try:
                waiting = pending is not None and pending.waiting()
                polled = consumer.poll(timeout_ms=0 if waiting else poll_timeout_ms, max_records=max_records)
                records = [r for part in polled.values() for r in part]
                if records:
                    on_records(records)
                    idle_since = time.monotonic()
                elif waiting and pending is not None:
                    pending.flush()
                if on_cycle is not None and not (pending is not None and pending.waiting()):
                    on_cycle(bool(records))
            except (BrokerUnavailable, StoreUnavailable, KafkaError) as exc:
                log.warning("%s not completed, will retry: %s", what, exc)
                if pending is not None:
                    pending.discard()
                rewind_to_committed(consumer)
                stop.wait(1.0)
            if not consumer.assignment():
                idle_since = time.monotonic()  # still joining the group: not idle yet
            if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                break
    finally:
        if pending is not None and pending.waiting():
            try:
                pending.flush()
            except (BrokerUnavailable, StoreUnavailable, KafkaError) as exc:
                log.warning("%s waiting at shutdown not completed, it will be replayed: %s", what, exc)
                pending.discard()


def serve(
    settings: Settings,
    group: str,
    topics: Sequence[str],
    handle: Callable[[list[Any]], Sequence[OutRecord]],
    *,
    stop: threading.Event,
    on_cycle: Callable[[bool], None] | None = None,
    max_idle_s: float | None = None,
    max_records: int = 500,
    what: str = "batch",
) -> None:
    """Consume `topics` in `group` until stopped: each batch goes to `handle`, the records it returns are
    published and acknowledged, and only then are the batch's offsets committed (at-least-once).

    Example:
        serve(settings, settings.evaluator_group, evaluator.topics(), evaluator.apply, stop=evaluator.stopping)
    """
    try:
        ensure_topics(settings)
    except KafkaError as exc:
        log.warning("could not ensure topics: %s", exc)
    consumer = make_consumer(settings, group, topics)
    producer = RecordProducer(settings)

    def on_records(records: list[Any]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, 0), rec.offset + 1)
        producer.send_all(handle(records))
        consumer.commit(offsets={tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})

    try:
        consume(consumer, stop, on_records, poll_timeout_ms=settings.poll_timeout_ms, max_records=max_records,
                on_cycle=on_cycle, max_idle_s=max_idle_s, what=what)
    finally:
        try:
            consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001 - closing after a broker failure may fail in many ways
            log.debug("consumer close failed", exc_info=True)
        producer.close()
