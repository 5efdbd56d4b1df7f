"""A producer that returns only once the broker acknowledged every record.

An idempotent producer is recreated on UnknownProducerIdError / OutOfOrderSequenceNumberError, which every send
raises after a broker restart loses the producer state (tansu does; so can Kafka).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, OutOfOrderSequenceNumberError, UnknownProducerIdError

from vigil_core.errors import BrokerUnavailable
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["RecordProducer"]

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
