"""The shared at-least-once loop with a waiting batch (the scorer finishes batch N while it scores N+1).

The consumer here is a stand-in that replays a script of poll results; the loop's broker behaviour is
covered by the integration tests on the real broker (tests/integration/test_scorer.py).
"""

from __future__ import annotations

import threading

from kafka.errors import KafkaConnectionError

from pipeline.kafka_io import consume


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
