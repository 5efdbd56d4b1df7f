"""End-to-end scorer throughput and publish-to-score latency on a local tansu broker and valkey.

    python bench/scoring_pipeline.py [--events 3000] [--latency-seconds 20]

1. Measures the classifier's raw messages/s on N chat-length messages in this process (batches of 64).
2. Publishes the same N messages, starts `vigil score` in its own process (as in production), and reports
   events/s end to end, from the first score to the last, beside the raw number.
3. Publishes at half the sustainable rate and reports publish-to-score latency p50/p99 (the clock starts
   before the publisher's acknowledged send and stops when a consumer in this process sees the score).

(Issue 4 calls it `bench/pipeline.py`; run as a script from `bench/`, that name would shadow the `pipeline`
package it imports.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import chat_messages  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

from demo.local import LocalBroker, LocalRedis  # noqa: E402
from kafka_io import OutRecord, RecordProducer, ensure_topics  # noqa: E402
from pipeline.commands import load_resilient_scorer  # noqa: E402
from vigil_core.clock import utcnow  # noqa: E402
from vigil_core.contracts import ConversationMessage  # noqa: E402
from vigil_core.settings import Settings  # noqa: E402


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


def first_to_last_rate(settings: Settings, want: int, timeout_s: float = 600.0) -> tuple[float, int]:
    """(scores/s from the first score seen to the last, scores seen): start-up and the group join are not counted.

    The watcher shares the 2 cores with the scorer, so it polls lazily (fetch wait 100 ms); the first and last
    arrival times are each late by at most that wait. The scores seen at the first arrival were produced before the
    clock started: only those after it count."""
    consumer = KafkaConsumer(settings.topic_scores, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    got, first, last, first_batch = 0, None, None, 0
    started = time.monotonic()
    while got < want and time.monotonic() - started < timeout_s:
        for recs in consumer.poll(timeout_ms=500).values():
            now = time.monotonic()
            if first is None:
                first, first_batch = now, len(recs)
            got += len(recs)
            last = now
    consumer.close()
    rate = (got - first_batch) / (last - first) if got > first_batch and last and first else 0.0
    return rate, got


def start_scorer(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """`vigil score` in its own process, configured by environment variables, as in production."""
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "VIGIL_REDIS_URL": settings.redis_url.get_secret_value(), "VIGIL_BATCH_SIZE": str(settings.batch_size),
           "VIGIL_FETCH_MAX_WAIT_MS": str(settings.fetch_max_wait_ms),
           "VIGIL_POLL_TIMEOUT_MS": str(settings.poll_timeout_ms), "VIGIL_TOPIC_PARTITIONS": "1",
           "VIGIL_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
           "VIGIL_HEARTBEAT_INTERVAL_MS": str(settings.heartbeat_interval_ms),
           "VIGIL_LOG_LEVEL": "WARNING"}
    vigil = Path(sys.executable).with_name("vigil")
    return subprocess.Popen([str(vigil), "score"], env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    texts = chat_messages(args.events, seed=1)
    with LocalBroker() as broker, LocalRedis() as server, tempfile.TemporaryDirectory() as tmp:
        tag = uuid.uuid4().hex[:6]
        s = Settings(kafka_bootstrap=broker.bootstrap, redis_url=server.url, batch_size=64,  # type: ignore[arg-type]
                     topic_partitions=1, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                     fetch_max_wait_ms=10, poll_timeout_ms=50)
        ensure_topics(s)
        # Raw classifier throughput on the same texts, same batch size, same backend choice as the scorer,
        # measured before and after the pipeline run (this machine's speed drifts by tens of percent).
        clf = load_resilient_scorer(s).model
        clf.batch_size = s.batch_size

        def raw_rate() -> float:
            t0 = time.perf_counter()
            for i in range(0, len(texts), s.batch_size):
                clf.predict(texts[i:i + s.batch_size])
            return len(texts) / (time.perf_counter() - t0)

        raw_rate()  # warm-up: every batch shape once
        raw_before = raw_rate()
        backend, model_version = clf.backend.name, clf.model_version

        producer = RecordProducer(s)
        producer.send_all([OutRecord(s.topic_events, m.conversation_id, m.to_bytes()) for m in messages(texts, tag)])
        scorer = start_scorer(s, Path(tmp) / "scorer.log")
        try:
            end_to_end, got = first_to_last_rate(s, len(texts))
            scorer.send_signal(signal.SIGSTOP)  # the scorer idles: measure the classifier alone again
            raw_after = raw_rate()
            scorer.send_signal(signal.SIGCONT)
            raw = (raw_before + raw_after) / 2

            # latency at half the sustainable rate
            rate = max(1.0, min(end_to_end, raw) / 2)
            lat_texts = chat_messages(int(rate * args.latency_seconds), seed=2)
            sent_at: dict[str, float] = {}
            seen_at: dict[str, float] = {}
            watcher = threading.Thread(target=count_scores, args=(s, got + len(lat_texts), 120.0, seen_at),
                                       daemon=True)
            watcher.start()
            time.sleep(1.0)
            for m in messages(lat_texts, tag + "L"):
                sent_at[m.event_id] = time.time()
                producer.send_all([OutRecord(s.topic_events, m.conversation_id, m.to_bytes())])
                time.sleep(1.0 / rate)
            watcher.join(timeout=120)
            lat = np.asarray([seen_at[k] - v for k, v in sent_at.items() if k in seen_at]) * 1000
        finally:
            scorer.send_signal(signal.SIGTERM)
            scorer_rc = scorer.wait(timeout=60)
            producer.close()
    print(json.dumps({
        "events": len(texts), "backend": backend, "model_version": model_version,
        "classifier_raw_messages_per_s": raw, "raw_before_and_after": [raw_before, raw_after],
        "pipeline_events_per_s": end_to_end,
        "pipeline_over_raw": end_to_end / raw if raw else None,
        "latency_rate_per_s": rate, "latency_events": int(lat.size),
        "publish_to_score_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "publish_to_score_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "scorer_exit_code": scorer_rc,
    }, indent=2))


if __name__ == "__main__":
    main()
