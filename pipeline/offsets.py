"""The scorer's offsets: how far each partition is finished, committed only once a batch's outputs are durable.

A batch's records count as finished when its outputs are acknowledged by the broker and its state is written to
Redis; only then is the next offset recorded here and committed. A crash before the commit replays the batch, and
every effect of a batch is idempotent, so a replay changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

__all__ = ["Offsets", "ForgetRevoked"]

log = logging.getLogger(__name__)


def _log_commit_failure(offsets: dict[TopicPartition, OffsetAndMetadata], result: object) -> None:
    if isinstance(result, Exception):
        log.warning("offset commit failed (the batch will be replayed, idempotently): %s", type(result).__name__)


class Offsets:
    """The next offset to commit per partition this instance owns. The consumer is the caller's (None: not
    consuming yet, nothing is committed)."""

    def __init__(self) -> None:
        self._done: dict[TopicPartition, int] = {}

    def past(self, tp: TopicPartition, offset: int) -> None:
        """Record everything up to and including `offset` as finished (a dead-lettered record)."""
        self._done[tp] = max(self._done.get(tp, 0), offset + 1)

    def finished(self, consumer: KafkaConsumer | None, offsets: dict[TopicPartition, int]) -> set[TopicPartition]:
        """Record a batch's next offsets, for the partitions still owned; return those partitions.

        A partition revoked while the batch waited is no longer ours to commit: its new owner replays those
        records, and every effect of the batch is idempotent."""
        owned = consumer.assignment() if consumer is not None else None
        kept = {tp: off for tp, off in offsets.items() if owned is None or tp in owned}
        self._done.update(kept)
        return set(kept)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the partitions this instance no longer owns."""
        for tp in partitions:
            self._done.pop(tp, None)

    def commit(self, consumer: KafkaConsumer | None, partitions: set[TopicPartition] | None, wait: bool = True) -> None:
        """Commit the finished offsets (all, or only the given partitions).

        Between batches the commit need not be waited for (`wait=False`): the batch's outputs are already
        acknowledged and its state written, so a commit that is lost only replays records whose effects are
        idempotent. Shutdown waits for its commit.
        """
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._done.items()
                   if partitions is None or tp in partitions}
        if offsets and consumer is not None:
            if wait:
                consumer.commit(offsets=offsets)
            else:
                consumer.commit_async(offsets=offsets, callback=_log_commit_failure)


class ForgetRevoked(ConsumerRebalanceListener):
    """Revocation commits nothing of its own (kafka-python 3 forbids blocking commits inside a synchronous
    listener). A batch waiting at a rebalance is finished afterwards, its offsets committed only for the
    partitions still owned; the new owner of a revoked partition replays what was not committed, and
    every effect of a batch is idempotent, so a replay changes nothing."""

    def __init__(self, offsets: Offsets) -> None:
        self._offsets = offsets

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._offsets.forget(set(revoked))
        log.info("revoked partitions: %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("assigned partitions: %s", sorted(tp.partition for tp in assigned))
