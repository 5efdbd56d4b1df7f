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
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumberError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
)
from kafka.structs import OffsetAndMetadata

from vigil_core.errors import BrokerUnavailable, StoreUnavailable
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["OutRecord", "RecordProducer", "make_consumer", "consumer_lag", "ensure_topics", "all_topics", "read_all",
           "rewind_to_committed", "consume", "serve", "Pending", "record_caused", "RECORD_ATTEMPTS",
           "dead_letter_record"]

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
            **settings.kafka_client_config(),
            "acks": "all",
            "linger_ms": 2,
            "retries": 5,
            "request_timeout_ms": 15000,
            "compression_type": None,
            "enable_idempotence": settings.kafka_idempotent_producer,
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


def all_topics(settings: Settings) -> list[str]:
    """Every topic Vigil reads or writes."""
    return [
        settings.topic_events,
        settings.topic_scores,
        settings.topic_scores_shadow,
        settings.topic_review,
        settings.topic_labels,
        settings.topic_dlq,
        settings.topic_incidents,
    ]


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None, partitions: int | None = None) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = KafkaAdminClient(**settings.kafka_client_config())
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


# Kafka errors a record itself causes (it can never be published or read as it is): retrying cannot help.
_RECORD_ERRORS: tuple[type[Exception], ...] = (MessageSizeTooLargeError, InvalidRecordError, CorruptRecordError)
# A record that fails this many times, alone, goes to the dead-letter topic and the consumer moves past it.
# Three: a Redis or broker blip that happens to come back as an unexpected error gets two more chances, and a
# record that cannot be processed holds its partition for seconds, not for ever.
RECORD_ATTEMPTS = 3


def record_caused(exc: BaseException) -> bool:
    """Whether a failure may be caused by the records (retrying the same records as they are cannot help).

    Broker and Redis outages, timeouts and rebalances are not: those batches are retried, for as long as it
    takes, and lose nothing. Everything else (a record Kafka refuses, a bug, a corrupt stored value) is.
    """
    if isinstance(exc, (BrokerUnavailable, StoreUnavailable)):
        return False
    if isinstance(exc, KafkaError):
        return isinstance(exc, _RECORD_ERRORS)
    return isinstance(exc, Exception)


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
    on_dead: Callable[[Any, BaseException, int], None] | None = None,
    attempts: int = RECORD_ATTEMPTS,
) -> None:
    """The at-least-once consumer loop of the scorer and the evaluator.

    `on_records` must finish (outputs acknowledged, state written, offsets committed) or raise; on a
    broker or Redis failure the consumer is rewound to its last commit and the records come again.
    With `pending`, `on_records` may instead leave its batch waiting and finish it during the next call
    (the scorer finishes batch N while the model scores batch N+1): the loop then polls without waiting,
    flushes the batch at once when no further records are ready, and before it leaves. Periodic work
    (`on_cycle(had_records)`) runs only when nothing is waiting. With `max_idle_s`, the loop ends once the
    consumer has partitions and has seen no record for that long (replays, tests).

    With `on_dead`, one bad record cannot stop a partition: after a failure the records may have caused
    (`record_caused`), the partitions of that batch are replayed from their last commit one record at a time,
    each finished before the next; a record that fails `attempts` times alone is handed to
    `on_dead(record, error, attempts)`, which must dead-letter it and commit past it. Without `on_dead` such a
    failure propagates (the process stops rather than skip anything).
    """
    idle_since = time.monotonic()
    isolate: dict[TopicPartition, int] = {}  # partition -> offset below which records are taken one at a time
    failures: dict[tuple[str, int, int], int] = {}  # (topic, partition, offset) -> failed attempts, alone
    previous: list[Any] = []  # the batch handed over before this one (it may be the one still waiting)
    try:
        while not stop.is_set():
            records: list[Any] = []
            if isolate:
                owned = consumer.assignment()
                for tp in [tp for tp in isolate if tp not in owned]:
                    del isolate[tp]  # revoked: its new owner replays it
            single = bool(isolate) and on_dead is not None
            try:
                waiting = pending is not None and pending.waiting()
                polled = consumer.poll(timeout_ms=0 if waiting else poll_timeout_ms,
                                       max_records=1 if single else max_records)
                records = [r for part in polled.values() for r in part]
                if records:
                    on_records(records)
                    if single and pending is not None:
                        pending.flush()
                    idle_since = time.monotonic()
                elif waiting and pending is not None:
                    pending.flush()
                if single:
                    _passed(isolate, failures, records)
                if records:
                    previous = records
            except Exception as exc:
                suspects = records + (previous if pending is not None else [])
                if not record_caused(exc) or not suspects:
                    log.warning("%s not completed, will retry: %s", what, exc)
                    _retry(consumer, pending, stop, 1.0)
                elif on_dead is None:
                    raise
                elif not single:
                    # A record of this batch, or of the one that was waiting, may be the cause: replay their
                    # partitions from the last commit one record at a time to find it.
                    log.warning("%s failed (%s); replaying its partitions one record at a time", what,
                                type(exc).__name__)
                    for rec in suspects:
                        tp = TopicPartition(rec.topic, rec.partition)
                        isolate[tp] = max(isolate.get(tp, 0), rec.offset + 1)
                    _retry(consumer, pending, stop, 0.0)
                else:
                    rec = records[0]
                    key = (rec.topic, rec.partition, rec.offset)
                    failures[key] = failures.get(key, 0) + 1
                    if failures[key] >= attempts:
                        if pending is not None:
                            pending.discard()
                        on_dead(rec, exc, failures.pop(key))
                        _passed(isolate, failures, [rec])
                    else:
                        log.warning("record %s/%d@%d failed alone (%s), attempt %d of %d", rec.topic,
                                    rec.partition, rec.offset, type(exc).__name__, failures[key], attempts)
                        _retry(consumer, pending, stop, 0.2 * failures[key])
                previous = []
                continue
            if on_cycle is not None and not (pending is not None and pending.waiting()):
                try:
                    on_cycle(bool(records))
                except (BrokerUnavailable, StoreUnavailable, KafkaError) as exc:
                    log.warning("periodic work of %s not completed, will retry: %s", what, exc)
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


def _retry(consumer: KafkaConsumer, pending: Pending | None, stop: threading.Event, wait_s: float) -> None:
    """Forget the waiting batch and go back to the last commit: everything not committed comes again."""
    if pending is not None:
        pending.discard()
    rewind_to_committed(consumer)
    if wait_s:
        stop.wait(wait_s)


def _passed(isolate: dict[TopicPartition, int], failures: dict[tuple[str, int, int], int],
            records: list[Any]) -> None:
    """Records finished one at a time: a partition past its isolated stretch goes back to whole batches."""
    for rec in records:
        tp = TopicPartition(rec.topic, rec.partition)
        failures.pop((rec.topic, rec.partition, rec.offset), None)
        if tp in isolate and rec.offset + 1 >= isolate[tp]:
            del isolate[tp]


def dead_letter_record(settings: Settings, rec: Any, exc: BaseException, attempts: int) -> OutRecord:
    """The dead letter of a consumed record that failed every attempt: its reason names the error, not the text."""
    from vigil_core.contracts import dead_letter

    log.error("record %s/%d@%d dead-lettered after %d failed attempts: %s", rec.topic, rec.partition, rec.offset,
              attempts, type(exc).__name__)
    reason = f"not processed after {attempts} attempts: {type(exc).__name__}: {str(exc)[:200]}"
    dl = dead_letter(reason, topic=rec.topic, partition=rec.partition, offset=rec.offset, key=rec.key,
                     raw=rec.value)
    return OutRecord(settings.topic_dlq, dl.key, dl.to_bytes())


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

    def on_dead(rec: Any, exc: BaseException, attempts: int) -> None:
        producer.send_all([dead_letter_record(settings, rec, exc, attempts)])
        tp = TopicPartition(rec.topic, rec.partition)
        consumer.commit(offsets={tp: OffsetAndMetadata(rec.offset + 1, "", -1)})

    def on_records(records: list[Any]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, 0), rec.offset + 1)
        producer.send_all(handle(records))
        consumer.commit(offsets={tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})

    try:
        consume(consumer, stop, on_records, poll_timeout_ms=settings.poll_timeout_ms, max_records=max_records,
                on_cycle=on_cycle, max_idle_s=max_idle_s, what=what, on_dead=on_dead)
    finally:
        try:
            consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001 - closing after a broker failure may fail in many ways
            log.debug("consumer close failed", exc_info=True)
        producer.close()
