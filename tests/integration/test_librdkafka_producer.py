"""A producer that is not kafka-python: it validates its records against `vigil schema export`'s JSON Schema and
publishes with librdkafka (confluent-kafka, what most non-Python chat backends share), keyed by conversation_id;
Vigil scores them, and the same client reads the scores back, valid against their schema too. A record keyed off
its conversation goes to the dead-letter topic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from kafka_io import ensure_topics
from tests.helpers import read_topic, run_scorer, values
from vigil.cli import main
from vigil_core.settings import Settings

confluent_kafka = pytest.importorskip("confluent_kafka")


def test_a_librdkafka_producer_validates_publishes_and_reads_the_score(settings: Settings, resilient, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings
    ensure_topics(s)
    for name in ("VIGIL_TOPIC_EVENTS", "VIGIL_TOPIC_SCORES"):
        monkeypatch.setenv(name, getattr(s, name[len("VIGIL_"):].lower()))
    assert main(["schema", "export", "--out", str(tmp_path)]) == 0
    topics = json.loads((tmp_path / "topics.json").read_text())["topics"]
    message_schema = json.loads((tmp_path / "conversation.message-1.schema.json").read_text())
    score_schema = json.loads((tmp_path / "safety.score-1.schema.json").read_text())
    assert "conversation.message-1.schema.json" in topics[s.topic_events]

    turns = [{"schema": "conversation.message/1", "event_id": f"lib-{i}", "conversation_id": "lib-conv",
              "user_id": "u-1", "turn": i, "role": "user" if i % 2 == 0 else "assistant",
              "text": text, "ts": f"2026-12-03T10:00:0{i}Z"}
             for i, text in enumerate(["hi there", "Hello! How can I help?", "I want to end my life tonight"])]
    for record in turns:
        jsonschema.validate(record, message_schema)  # what a producer checks before it publishes
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**turns[0], "turn": "two"}, message_schema)

    producer = confluent_kafka.Producer({"bootstrap.servers": s.kafka_bootstrap, "enable.idempotence": False,
                                         "acks": "all"})
    delivered: list[object] = []
    for record in turns:
        producer.produce(s.topic_events, key=record["conversation_id"], value=json.dumps(record),
                         on_delivery=lambda err, msg: delivered.append(err or msg.offset()))
    producer.produce(s.topic_events, key="another-conversation",
                     value=json.dumps({**turns[0], "event_id": "lib-wrong-key"}),
                     on_delivery=lambda err, msg: delivered.append(err or msg.offset()))
    assert producer.flush(30) == 0
    assert all(isinstance(d, int) for d in delivered), delivered

    run_scorer(s, resilient, max_idle_s=3.0)

    consumer = confluent_kafka.Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": f"lib-{s.scorer_group}",
                                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    partitions = consumer.list_topics(s.topic_scores, timeout=30).topics[s.topic_scores].partitions
    consumer.assign([confluent_kafka.TopicPartition(s.topic_scores, p, confluent_kafka.OFFSET_BEGINNING)
                     for p in partitions])  # no group: read the topic from its beginning
    scores: dict[str, dict[str, object]] = {}
    keys: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(scores) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        score = json.loads(msg.value())
        jsonschema.validate(score, score_schema)
        scores[score["event_id"]] = score
        keys.add(msg.key())
    consumer.close()
    assert set(scores) == {"lib-0", "lib-2"} and keys == {b"lib-conv"}  # user turns, keyed by conversation
    assert scores["lib-2"]["flagged"] is True and scores["lib-0"]["flagged"] is False
    dead = values(read_topic(s, s.topic_dlq, expect=1))
    assert [d["reason"].split(":")[0] for d in dead] == ["<key>"]
