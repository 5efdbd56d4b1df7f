"""The shared at-least-once loop with a waiting batch (the scorer finishes batch N while it scores N+1).

The consumer here is a stand-in that replays a script of poll results; the loop's broker behaviour is
covered by the integration tests on the real broker (tests/integration/test_scorer.py).
"""

from __future__ import annotations

import threading

from kafka.errors import KafkaConnectionError

from kafka_io import consume


class ScriptedConsumer:
    def __init__(self, script, stop):
        self.script = list(script)
        self.stop = stop
        self.timeouts: list[int] = []
        self.seeks = 0

    def poll(self, timeout_ms, max_records):
        self.timeouts.append(timeout_ms)
        if not self.script:
            self.stop.set()
            return {}
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return {"tp": step} if step else {}

    def assignment(self):
        return {"tp"}

    def committed(self, tp):
        return 0

    def seek(self, tp, offset):
        self.seeks += 1


class Pipelined:
    """Accepts a batch, finishes the one before it, and leaves the new one waiting."""

    def __init__(self, log):
        self.log = log
        self.current = None

    def accept(self, records):
        self.log.append(("accept", records))
        self.flush()
        self.current = records

    def waiting(self):
        return self.current is not None

    def flush(self):
        if self.current is not None:
            self.log.append(("finish", self.current))
            self.current = None

    def discard(self):
        self.log.append(("discard", self.current))
        self.current = None


def run(script):
    stop = threading.Event()
    consumer = ScriptedConsumer(script, stop)
    log: list = []
    p = Pipelined(log)
    consume(consumer, stop, p.accept, poll_timeout_ms=50, max_records=10, pending=p,
            on_cycle=lambda had: log.append(("cycle", had)))
    return consumer, log


def test_a_waiting_batch_is_finished_as_soon_as_no_records_follow():
    consumer, log = run([["a"], ["b"], []])  # then an empty poll that ends the run
    assert log == [
        ("accept", ["a"]),
        ("accept", ["b"]), ("finish", ["a"]),
        ("finish", ["b"]), ("cycle", False),  # periodic work only once nothing waits
        ("cycle", False),
    ]
    # while a batch waits the loop does not block in poll; otherwise it waits the configured time
    assert consumer.timeouts[:4] == [50, 0, 0, 50]


def test_a_failure_discards_the_waiting_batch_and_rewinds():
    consumer, log = run([["a"], KafkaConnectionError("broker gone"), ["a"], []])
    assert ("discard", ["a"]) in log and consumer.seeks == 1
    # the replayed batch is accepted again and finished; the discarded one never was
    assert [e for e in log if e[0] == "finish"] == [("finish", ["a"])]


def test_the_loop_never_leaves_a_batch_waiting():
    stop = threading.Event()
    log: list = []
    p = Pipelined(log)

    class StopAfterOne(ScriptedConsumer):
        def poll(self, timeout_ms, max_records):
            out = super().poll(timeout_ms, max_records)
            self.stop.set()  # SIGTERM right after a batch was accepted
            return out

    consume(StopAfterOne([["a"]], stop), stop, p.accept, poll_timeout_ms=50, max_records=10, pending=p)
    assert log == [("accept", ["a"]), ("finish", ["a"])]


class Rec:
    def __init__(self, offset, value):
        self.topic, self.partition, self.offset, self.key, self.value = "t", 0, offset, None, value

    def __repr__(self):
        return f"Rec({self.offset})"


class PartitionLog:
    """One partition with a position and a committed offset: poll returns from the position, a rewind seeks
    back to the commit (as the real consumer does)."""

    def __init__(self, values, stop):
        from kafka import TopicPartition

        self.tp = TopicPartition("t", 0)
        self.records = [Rec(i, v) for i, v in enumerate(values)]
        self.position = 0
        self.committed_offset = 0
        self.stop = stop
        self.max_records_seen: list[int] = []

    def poll(self, timeout_ms, max_records):
        self.max_records_seen.append(max_records)
        out = self.records[self.position:self.position + max_records]
        if not out:
            self.stop.set()
            return {}
        self.position += len(out)
        return {self.tp: out}

    def assignment(self):
        return {self.tp}

    def committed(self, tp):
        return self.committed_offset

    def seek(self, tp, offset):
        self.position = offset


def test_a_record_that_always_fails_is_dead_lettered_alone_and_the_partition_moves_on():
    stop = threading.Event()
    log = PartitionLog(["ok"] * 5 + ["poison"] + ["ok"] * 6, stop)
    processed: list[int] = []
    dead: list[tuple[int, str, int]] = []

    def on_records(records):
        if any(r.value == "poison" for r in records):
            raise ValueError("cannot process this one")
        processed.extend(r.offset for r in records)
        log.committed_offset = records[-1].offset + 1

    def on_dead(rec, exc, attempts):
        dead.append((rec.offset, type(exc).__name__, attempts))
        log.committed_offset = rec.offset + 1

    consume(log, stop, on_records, poll_timeout_ms=10, max_records=4, on_dead=on_dead, attempts=3)
    assert dead == [(5, "ValueError", 3)]  # the poison record, after three failed attempts alone
    assert sorted(set(processed)) == [i for i in range(12) if i != 5]  # every other record was processed
    assert log.committed_offset == 12
    assert 1 in log.max_records_seen and log.max_records_seen[-1] == 4  # one at a time, then whole batches again


def test_a_broker_outage_is_retried_for_ever_and_never_dead_letters():
    stop = threading.Event()
    log = PartitionLog(["ok"] * 4, stop)
    outages = [KafkaConnectionError("down")] * 2
    dead: list = []

    def on_records(records):
        if outages:
            raise outages.pop()
        log.committed_offset = records[-1].offset + 1

    consume(log, stop, on_records, poll_timeout_ms=10, max_records=4, on_dead=lambda *a: dead.append(a),
            attempts=3)
    assert dead == [] and log.committed_offset == 4


def test_without_a_dead_letter_handler_a_failing_record_stops_the_loop_rather_than_being_skipped():
    import pytest

    stop = threading.Event()
    log = PartitionLog(["poison"], stop)

    def on_records(records):
        raise ValueError("cannot process")

    with pytest.raises(ValueError):
        consume(log, stop, on_records, poll_timeout_ms=10, max_records=4)
    assert log.committed_offset == 0
