"""Faults injected into the real scorer, broker and Redis (issue 19): one conversation or one corrupt stored
value must never stop a partition, and nothing may be lost on the way."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis

from pipeline.kafka_io import ensure_topics
from tests.helpers import chat_events, publish, read_topic, run_scorer, values
from vigil_core.contracts import ConversationMessage

pytestmark = pytest.mark.slow

FILLER = "and then we walked to the park and talked about the weather and the football. "


@pytest.fixture
def fault_settings(settings, model_cache):
    return settings.model_copy(update={"batch_size": 32, "cache_dir": model_cache})


def _long_conversation(cid: str, user_turns: int, chars: int) -> list[ConversationMessage]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    for i in range(user_turns):
        text = (("I want to die. " if i == 0 else "") + FILLER * (chars // len(FILLER) + 1))[:chars]
        out.append(ConversationMessage(event_id=f"{cid}-u{i}", conversation_id=cid, user_id="u-big", turn=2 * i,
                                       role="user", text=text, ts=start + timedelta(seconds=i)))
    return out


def test_one_very_long_conversation_is_scored_reviewed_and_blocks_nobody(fault_settings, resilient):
    """40 user turns of 30,000 characters, the first saying "I want to die": before the fix its review request
    outgrew Kafka's record limit and the partition was retried for ever."""
    s = fault_settings
    ensure_topics(s)
    big = _long_conversation("big", 40, 30_000)
    others = chat_events(6, turns=2, crisis_every=3)
    publish(s, big + others)
    run_scorer(s, resilient, max_idle_s=8.0)

    scores = values(read_topic(s, s.topic_scores, settle_s=1.0))
    per_event = Counter(d["event_id"] for d in scores)
    want = {e.event_id for e in big} | {e.event_id for e in others if e.role == "user"}
    assert want <= set(per_event), sorted(want - set(per_event))[:5]  # every user turn was scored
    assert max(per_event.values()) == 1  # and once: no batch was replayed again and again
    first = next(d for d in scores if d["event_id"] == "big-u0")
    assert first["flagged"]

    raw = [r for r in read_topic(s, s.topic_review, settle_s=1.0) if r.key == b"big"]
    assert len(raw) == 1
    request = json.loads(raw[0].value)
    assert len(raw[0].value) <= s.review_max_bytes + 4096  # under the bound, far under Kafka's 1 MiB
    assert request["first_flagged_turn"] == 0 and request["omitted_turns"] > 0
    assert any(t["turn"] == 0 and t["role"] == "user" and t["text"].startswith("I want to die")
               for t in request["turns"])
    assert read_topic(s, s.topic_dlq, settle_s=0.5) == []


def test_a_corrupt_stored_state_dead_letters_only_its_own_records(fault_settings, resilient):
    """A conversation whose Redis state cannot be read (a bad value written by hand or by a bug) used to stop
    scoring for its partition, or kill the scorer; now its records go to the DLQ with the reason after three
    attempts, and every other conversation is scored once."""
    s = fault_settings
    ensure_topics(s)
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    client.hset(f"{s.redis_prefix}pred:c00002", mapping={"conversation_id": "c00002", "max_score": "not a number"})
    events = chat_events(8, turns=2, crisis_every=4)
    publish(s, events)
    run_scorer(s, resilient, max_idle_s=8.0)

    dead = values(read_topic(s, s.topic_dlq, settle_s=1.0))
    bad = {e.event_id for e in events if e.conversation_id == "c00002"}
    assert {json.loads(base64.b64decode(d["raw"]))["event_id"] for d in dead} == bad
    assert all("not processed after 3 attempts: ValueError" in d["reason"] for d in dead)
    scores = values(read_topic(s, s.topic_scores, settle_s=1.0))
    per_event = Counter(d["event_id"] for d in scores)
    good = {e.event_id for e in events if e.role == "user" and e.conversation_id != "c00002"}
    assert good <= set(per_event) and not bad & set(per_event)
    # Scored twice only if a batch was replayed after the fault; then with the same score (exact replay).
    for event_id in good:
        assert len({round(d["score"], 6) for d in scores if d["event_id"] == event_id}) == 1

    # Offsets moved past the dead records: a restarted scorer finds nothing left to do.
    run_scorer(s, resilient, max_idle_s=4.0)
    assert len(values(read_topic(s, s.topic_dlq, settle_s=0.5))) == len(dead)
