"""End-to-end scorer throughput and publish-to-score latency on a local tansu broker and valkey.

    python bench/pipeline.py [--events 3000]

1. Publishes N chat-length user messages, runs the scorer until all are scored, and reports events/s
   end to end beside the classifier's raw messages/s on the same texts in the same run.
2. Publishes at half the sustainable rate and reports publish-to-score latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import chat_messages  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

from pipeline.commands import load_resilient_scorer  # noqa: E402
from pipeline.contracts import ConversationMessage, utcnow  # noqa: E402
from pipeline.kafka_io import OutRecord, RecordProducer, ensure_topics  # noqa: E402
from pipeline.local import LocalBroker, LocalRedis  # noqa: E402
from pipeline.scorer import Scorer  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def messages(texts: list[str], tag: str) -> list[ConversationMessage]:
    return [ConversationMessage(event_id=f"{tag}-{i}", conversation_id=f"{tag}-c{i % 500}", user_id="u", turn=i // 500,
                                role="user", text=t, ts=utcnow()) for i, t in enumerate(texts)]


def count_scores(settings: Settings, want: int, timeout_s: float, seen_at: dict[str, float] | None = None) -> float:
    consumer = KafkaConsumer(settings.topic_scores, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest", fetch_max_wait_ms=10)
    got = 0
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    while got < want and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=100).values():
            now = time.monotonic()
            for r in recs:
                got += 1
                last = now
                if seen_at is not None:
                    seen_at[json.loads(r.value)["event_id"]] = time.time()
    consumer.close()
    return last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    texts = chat_messages(args.events, seed=1)
    with LocalBroker() as broker, LocalRedis() as server:
        tag = uuid.uuid4().hex[:6]
        s = Settings(kafka_bootstrap=broker.bootstrap, redis_url=server.url, batch_size=64,  # type: ignore[arg-type]
                     topic_partitions=1, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                     fetch_max_wait_ms=10, poll_timeout_ms=50)
        ensure_topics(s)
        resilient = load_resilient_scorer(s)
        # raw classifier throughput on the same texts, same batch size
        clf = resilient.model
        clf.batch_size = s.batch_size
        clf.predict(texts[:64])
        t0 = time.perf_counter()
        for i in range(0, len(texts), s.batch_size):
            clf.predict(texts[i:i + s.batch_size])
        raw = len(texts) / (time.perf_counter() - t0)

        producer = RecordProducer(s)
        producer.send_all([OutRecord(s.topic_events, m.conversation_id, m.to_bytes()) for m in messages(texts, tag)])
        scorer = Scorer(s, resilient)
        thread = threading.Thread(target=scorer.run, daemon=True)
        started = time.monotonic()
        thread.start()
        # time from the first score to the last, so the group join is not counted
        first_seen = {}
        consumer = KafkaConsumer(s.topic_scores, bootstrap_servers=s.kafka_bootstrap, group_id=None,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=10)
        got, first, last = 0, None, None
        while got < len(texts) and time.monotonic() - started < 600:
            for recs in consumer.poll(timeout_ms=100).values():
                now = time.monotonic()
                first = first or now
                got += len(recs)
                last = now
                first_seen[recs[0].offset] = now
        consumer.close()
        end_to_end = (got - 1) / (last - first) if got > 1 and last and first else 0.0

        # latency at half the sustainable rate
        rate = max(1.0, min(end_to_end, raw) / 2)
        lat_texts = chat_messages(int(rate * args.latency_seconds), seed=2)
        sent_at: dict[str, float] = {}
        seen_at: dict[str, float] = {}
        watcher = threading.Thread(target=count_scores, args=(s, got + len(lat_texts), 120.0, seen_at), daemon=True)
        watcher.start()
        time.sleep(1.0)
        for m in messages(lat_texts, tag + "L"):
            sent_at[m.event_id] = time.time()
            producer.send_all([OutRecord(s.topic_events, m.conversation_id, m.to_bytes())])
            time.sleep(1.0 / rate)
        watcher.join(timeout=120)
        lat = np.asarray([seen_at[k] - v for k, v in sent_at.items() if k in seen_at]) * 1000
        scorer.stop()
        thread.join(timeout=60)
        producer.close()
    print(json.dumps({
        "events": len(texts), "backend": clf.backend.name, "model_version": clf.model_version,
        "classifier_raw_messages_per_s": raw, "pipeline_events_per_s": end_to_end,
        "pipeline_over_raw": end_to_end / raw if raw else None,
        "latency_rate_per_s": rate, "latency_events": int(lat.size),
        "publish_to_score_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "publish_to_score_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
    }, indent=2))


if __name__ == "__main__":
    main()
