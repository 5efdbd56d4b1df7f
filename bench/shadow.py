"""The champion's throughput with and without a candidate in shadow, end to end (`vigil score` in its own process
on a local tansu broker and valkey, as bench/scoring_pipeline.py measures it).

    python bench/shadow.py [--events 3000] [--shares 1.0,0.5,0.25] [--rate R]

The candidate is a registered copy of the shipped model (the same size and cost as the champion: a candidate is a
retrained version of it). For each configuration (no shadow, then each share) it publishes the same N messages to
fresh topics, starts `vigil score` with the live-model record set, and reports the champion's events/s from its
first score to its last, the drop against no shadow, and how many user turns the shadow scored and skipped (its
queue full: those conversations leave the comparison). The shadow publishes to its own topic; its work after the
champion's last score is not counted (it is off the critical path). With `--rate R` the events are published at R
per second instead of all at once (a load below saturation, as a scorer runs in production): the share of turns the
shadow kept up with is then the number to read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import chat_messages  # noqa: E402
from scoring_pipeline import first_to_last_rate, messages  # noqa: E402

from demo.local import LocalBroker, LocalRedis  # noqa: E402
from kafka_io import OutRecord, RecordProducer, ensure_topics  # noqa: E402
from models.classifier import DEFAULT_MODEL_DIR  # noqa: E402
from models.store import ModelStore  # noqa: E402
from vigil_core.model_record import ModelRecord  # noqa: E402
from vigil_core.redis_client import connect  # noqa: E402
from vigil_core.settings import Settings  # noqa: E402


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def run(base: Settings, texts: list[str], share: float | None, candidate: str, store: Path, log: Path,
        cache: Path, rate: float | None = None) -> dict[str, float | None]:
    """One configuration on fresh topics, group and prefix."""
    import subprocess
    import urllib.request

    tag = uuid.uuid4().hex[:6]
    s = base.model_copy(update={
        "topic_events": f"ev-{tag}", "topic_scores": f"sc-{tag}", "topic_scores_shadow": f"sh-{tag}",
        "topic_review": f"rv-{tag}", "topic_dlq": f"dl-{tag}", "topic_incidents": f"in-{tag}",
        "scorer_group": f"g-{tag}", "redis_prefix": f"b{tag}:"})
    ensure_topics(s)
    if share is not None:
        ModelRecord(connect(s.redis_url.get_secret_value()), s.redis_prefix).set_shadow(candidate, share, "bench",
                                                                                       "benchmark")
    records = [OutRecord(s.topic_events, m.conversation_id, m.to_bytes()) for m in messages(texts, tag)]
    producer = RecordProducer(s)
    if rate is None:
        producer.send_all(records)
        producer.close()
    env = {**os.environ, "VIGIL_LOG_LEVEL": "WARNING", "VIGIL_MODEL_STORE": str(store), "VIGIL_CACHE_DIR": str(cache),
           "VIGIL_RESPONSE_SAFETY": "false"}
    for name in ("kafka_bootstrap", "batch_size", "fetch_max_wait_ms", "poll_timeout_ms", "topic_partitions",
                 "session_timeout_ms", "heartbeat_interval_ms", "topic_events", "topic_scores", "topic_scores_shadow",
                 "topic_review", "topic_dlq", "topic_incidents", "scorer_group", "redis_prefix"):
        env[f"VIGIL_{name.upper()}"] = str(getattr(s, name))
    env["VIGIL_REDIS_URL"] = s.redis_url.get_secret_value()
    port = 19000 + (os.getpid() % 500)
    vigil = Path(sys.executable).with_name("vigil")
    scorer = subprocess.Popen([str(vigil), "score", "--metrics-port", str(port)], env=env, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT)
    publisher = None
    if rate is not None:
        import threading

        def paced() -> None:
            time.sleep(15.0)  # the scorer loads its models and joins the group first
            for start in range(0, len(records), 16):
                producer.send_all(records[start:start + 16])
                time.sleep(16 / rate)
            producer.close()

        publisher = threading.Thread(target=paced, daemon=True)
        publisher.start()
    try:
        scored_rate, _ = first_to_last_rate(s, len(texts))
        if publisher is not None:
            publisher.join()
            time.sleep(3.0)  # the shadow finishes what it has queued
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
    finally:
        scorer.terminate()
        scorer.wait(timeout=60)
    return {"share": share, "champion_events_per_s": scored_rate, "published_per_s": rate,
            "shadow_scored": _metric(metrics, "vigil_scorer_shadow_scored_total"),
            "shadow_skipped": _metric(metrics, "vigil_scorer_shadow_skipped_total")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--shares", default="1.0,0.5,0.25")
    parser.add_argument("--rate", type=float, default=None, help="publish at this many events/s (default: at once)")
    args = parser.parse_args()
    texts = chat_messages(args.events, seed=1)
    results = []
    with LocalBroker() as broker, LocalRedis() as server, tempfile.TemporaryDirectory() as tmp:
        base = Settings(kafka_bootstrap=broker.bootstrap, redis_url=server.url, batch_size=64,  # type: ignore[arg-type]
                        topic_partitions=1, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                        fetch_max_wait_ms=10, poll_timeout_ms=50)
        candidate_dir = Path(tmp) / "candidate"
        shutil.copytree(DEFAULT_MODEL_DIR, candidate_dir)
        (candidate_dir / "NOTE").write_text("a copy: the candidate costs what the champion costs\n")
        store = Path(tmp) / "store"
        candidate = ModelStore(store).register(candidate_dir, note="bench").version
        cache = Path(tmp) / "cache"
        for share in [None, *(float(x) for x in args.shares.split(","))]:
            results.append(run(base, texts, share, candidate, store, Path(tmp) / f"scorer-{share}.log", cache,
                               args.rate))
    alone = results[0]["champion_events_per_s"] or 0.0
    for r in results:
        rate = r["champion_events_per_s"] or 0.0
        r["drop_vs_no_shadow"] = (1 - rate / alone) if alone else None
    print(json.dumps({"events": args.events, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
