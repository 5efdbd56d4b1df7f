"""The at-least-once consumer loop (the scorer's and the evaluator's), and `serve` for a service that turns each batch
into records to publish: outputs acknowledged before offsets are committed, failures retried from the last commit,
and a record that fails every attempt alone dead-lettered so it cannot stop its partition."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, InvalidRecordError, KafkaError, MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata

from kafka_io.consumer import make_consumer, rewind_to_committed
from kafka_io.dead_letters import dead_letter_record
from kafka_io.producer import RecordProducer
from kafka_io.topics import ensure_topics
from vigil_core.errors import BrokerUnavailable, StoreUnavailable
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["Pending", "RECORD_ATTEMPTS", "record_caused", "consume", "serve"]

log = logging.getLogger(__name__)


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
