"""Processes killed with SIGKILL while events flow, and a flood of fuzzed records (issue 19's fault suite).

Each test records its figures (tests/faults/results.py); `make faults` prints them as one table.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition

from kafka_io import ensure_topics
from tests.faults.results import RESULTS, Figures
from tests.helpers import chat_events, publish, read_topic, run_scorer, values, vigil, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.faults]

KILLS = 20
EVENTS = 5_000


class ScoreWatch:
    """Reads `safety.scores` incrementally: every score seen so far, per event id."""

    def __init__(self, settings) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=settings.fetch_max_wait_ms)
        ensure_topics(settings)
        parts = wait_until(lambda: self.consumer.partitions_for_topic(settings.topic_scores), timeout_s=30)
        tps = [TopicPartition(settings.topic_scores, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.scores: dict[str, list[float]] = defaultdict(list)
        self.flagged: set[str] = set()  # conversation ids with a flagged turn

    def count(self) -> int:
        for records in self.consumer.poll(timeout_ms=100).values():
            for rec in records:
                d = json.loads(rec.value)
                self.scores[d["event_id"]].append(round(d["score"], 5))
                if d["flagged"]:
                    self.flagged.add(d["conversation_id"])
        return sum(len(v) for v in self.scores.values())

    def close(self) -> None:
        self.consumer.close()


def _figures(scores: dict[str, list[float]], want: set[str], dead: set[str]) -> tuple[int, int]:
    lost = len(want - set(scores) - dead)
    twice_different = sum(len(set(v)) > 1 for v in scores.values())
    return lost, twice_different


@pytest.fixture
def kill_settings(settings, model_cache):
    # A SIGKILLed scorer never leaves its group: its successor waits for the session timeout before it is given the
    # partitions, so each kill costs about that long. 3 s (the suite's 6 s halved) keeps 20 kills inside the budget.
    return settings.model_copy(update={"batch_size": 16, "cache_dir": model_cache, "heartbeat_interval_s": 0.5,
                                       "session_timeout_ms": 3000, "heartbeat_interval_ms": 500})


def test_a_scorer_killed_20_times_mid_batch_loses_nothing_and_scores_nothing_twice_differently(kill_settings,
                                                                                              tmp_path):
    s = kill_settings
    ensure_topics(s)
    events = chat_events(EVENTS // 4, turns=2, crisis_every=5)
    publish(s, events)
    want = {e.event_id for e in events if e.role == "user"}
    watch = ScoreWatch(s)
    recover: list[float] = []
    kills = 0
    proc = vigil(["score"], s, tmp_path / "scorer-0.log")
    try:
        assert wait_until(lambda: watch.count() > 0, timeout_s=180, every=0.2)
        for k in range(KILLS):
            if len(watch.scores) >= len(want):
                break  # all scored before the 20th kill: the table says how many kills there were
            proc.send_signal(signal.SIGKILL)  # mid-batch: it was publishing a moment ago
            proc.wait()
            kills += 1
            killed_at, seen = time.monotonic(), watch.count()
            proc = vigil(["score"], s, tmp_path / f"scorer-{k + 1}.log")
            assert wait_until(lambda seen=seen: watch.count() > seen or len(watch.scores) >= len(want),
                              timeout_s=180, every=0.2), (tmp_path / f"scorer-{k + 1}.log").read_text()[-2000:]
            recover.append(time.monotonic() - killed_at)
        assert wait_until(lambda: (watch.count(), len(watch.scores) >= len(want))[1], timeout_s=300, every=0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        watch.close()
    dead = {json.loads(base64.b64decode(d["raw"])).get("event_id")
            for d in values(read_topic(s, s.topic_dlq, settle_s=0.5))}
    lost, twice = _figures(watch.scores, want, dead)
    RESULTS.append(Figures(f"scorer SIGKILLed mid-batch {kills} times", len(events), lost, twice, 0,
                           max(recover) if recover else None,
                           f"{len(want)} user turns; recovery = kill to next score (model load and group "
                           f"rejoin), mean {sum(recover) / max(1, len(recover)):.1f} s, max shown"))
    assert kills >= 5
    assert lost == 0 and twice == 0 and not dead


def test_two_scorers_one_killed_the_other_takes_its_partitions(kill_settings, tmp_path):
    s = kill_settings
    ensure_topics(s)
    events = chat_events(250, turns=2)
    publish(s, events)
    want = {e.event_id for e in events if e.role == "user"}
    watch = ScoreWatch(s)
    procs = [vigil(["score"], s, tmp_path / f"scorer-{i}.log") for i in range(2)]
    try:
        assert wait_until(lambda: watch.count() > 20, timeout_s=180, every=0.2)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        killed_at = time.monotonic()
        assert wait_until(lambda: (watch.count(), len(watch.scores) >= len(want))[1], timeout_s=300, every=0.5)
        recover = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
        watch.close()
    lost, twice = _figures(watch.scores, want, set())
    RESULTS.append(Figures("two scorers, one SIGKILLed", len(events), lost, twice, 0, recover,
                           "recovery = kill to every turn scored (the survivor takes the partitions after the "
                           "session timeout)"))
    assert lost == 0 and twice == 0


def _fuzz(rng: random.Random, i: int) -> bytes:
    kind = i % 8
    if kind == 0:
        return rng.randbytes(rng.randint(0, 400))
    if kind == 1:
        return b"[" * 100_000 + b"]" * 100_000  # deeply nested
    if kind == 2:
        return json.dumps({"schema": "conversation.message/1", "event_id": i, "turn": "two", "text": None}).encode()
    if kind == 3:
        return b'{"schema": "conversation.message/1", "text": "\xff\xfe broken utf-8"}'
    if kind == 4:
        return json.dumps({"schema": "conversation.message/1", "text": "\ud800"}).encode()  # lone surrogate
    if kind == 5:
        return json.dumps({"schema": "nope/9", "x": [1] * rng.randint(0, 50)}).encode()
    if kind == 6:
        return json.dumps({"schema": "conversation.message/1", "event_id": f"e{i}", "conversation_id": "c",
                           "user_id": "u", "turn": 0, "role": "user", "text": "x" * 40_000,
                           "ts": "2026-12-02T10:00:00Z"}).encode()  # over the text limit
    return json.dumps([{"a": rng.random()} for _ in range(rng.randint(0, 20))]).encode()  # not an object


def test_ten_thousand_fuzzed_records_all_go_to_the_dlq_and_valid_turns_are_scored_once(kill_settings, resilient):
    s = kill_settings.model_copy(update={"batch_size": 64})
    ensure_topics(s)
    rng = random.Random(19)
    fuzz = [(f"k{i % 50}", _fuzz(rng, i)) for i in range(10_000)]
    valid = chat_events(50, turns=2)
    started = time.monotonic()
    publish(s, valid, raw=fuzz)
    run_scorer(s, resilient, max_idle_s=6.0)
    took = time.monotonic() - started
    dead = values(read_topic(s, s.topic_dlq, settle_s=1.0))
    scores = defaultdict(list)
    for d in values(read_topic(s, s.topic_scores, settle_s=1.0)):
        scores[d["event_id"]].append(round(d["score"], 5))
    want = {e.event_id for e in valid if e.role == "user"}
    lost, twice = _figures(scores, want, set())
    RESULTS.append(Figures("10,000 fuzzed records among 200 valid events", len(fuzz) + len(valid), lost, twice, 0,
                           took, f"{len(dead)} dead letters with a reason (random bytes, nesting, wrong types, "
                           "invalid UTF-8, lone surrogates, unknown schemas, oversize text); the scorer never stopped"))
    assert len(dead) == len(fuzz) and all(d["reason"] for d in dead)
    assert lost == 0 and twice == 0 and all(len(v) == 1 for v in scores.values())
