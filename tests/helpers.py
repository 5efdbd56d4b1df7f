"""Helpers for integration tests: chat events, reading a topic to the end, waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from kafka_io import OutRecord, RecordProducer
from vigil_core.contracts import ClinicianLabel, ConversationClosed, ConversationMessage
from vigil_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

CRISIS = [
    "I want to die", "I have the pills in my hand", "I'm going to kill myself tonight",
    "i wrote a note for my family, I won't be here tomorrow", "I can't do this anymore, I want to end my life",
]
# Ordinary messages the shipped model scores below its threshold (the pipeline tests are about the pipeline;
# the model's own false positives are covered by tests/unit/test_classifier.py and its card).
# (The shipped model still flags many ordinary chat turns at its recall-0.97 threshold; see its card.)
BENIGN = [
    "can you recommend a podcast about history?", "I'm nervous about my job interview tomorrow",
    "what's a good way to organise my notes for class?", "can you suggest a recipe with chickpeas?",
    "can you explain how compound interest works?", "any tips for growing tomatoes?",
    "my sister is visiting this weekend",
]


def chat_events(n_conversations: int, turns: int = 3, crisis_every: int = 4, start: datetime | None = None,
                prefix: str = "c") -> list[ConversationMessage | ConversationClosed]:
    """Conversations of alternating user/assistant turns; every `crisis_every`-th has a crisis turn."""
    start = start or (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    events: list[Any] = []
    for c in range(n_conversations):
        cid = f"{prefix}{c:05d}"
        for t in range(turns):
            crisis = crisis_every and c % crisis_every == 0 and t == turns - 1
            text = CRISIS[c % len(CRISIS)] if crisis else BENIGN[(c + t) % len(BENIGN)]
            ts = start + timedelta(seconds=c * 10 + t)
            events.append(ConversationMessage(event_id=f"{cid}-u{t}", conversation_id=cid, user_id=f"u{c}", turn=2 * t,
                                              role="user", text=text, ts=ts))
            events.append(ConversationMessage(event_id=f"{cid}-a{t}", conversation_id=cid, user_id=f"u{c}",
                                              turn=2 * t + 1, role="assistant", text="I hear you.", ts=ts,
                                              latency_ms=800.0))
    return events


def publish(settings: Settings, events: list[Any], raw: list[tuple[str | None, bytes]] = ()) -> None:
    producer = RecordProducer(settings)
    records = [OutRecord(settings.topic_events, e.conversation_id, e.to_bytes()) for e in events]
    records += [OutRecord(settings.topic_events, k, v) for k, v in raw]
    producer.send_all(records)
    producer.close()


def read_topic(settings: Settings, topic: str, expect: int | None = None, timeout_s: float = 60.0,
               settle_s: float = 1.0, fetch_max_wait_ms: int = 10) -> list[Any]:
    """Every record of `topic` from the beginning (no group); waits for `expect` records if given."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=fetch_max_wait_ms, consumer_timeout_ms=200)
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[Any] = []
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        got = consumer.poll(timeout_ms=200)
        for recs in got.values():
            out.extend(recs)
            last_new = time.monotonic()
        if expect is not None and len(out) >= expect and time.monotonic() - last_new > 0.2:
            break
        if expect is None and time.monotonic() - last_new > settle_s:
            break
    consumer.close()
    return out


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def wait_until(predicate: Callable[[], Any], timeout_s: float = 30.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    return predicate()


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment variables that reproduce `settings` in a child `vigil` process."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"VIGIL_{name.upper()}"] = str(value)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def vigil(args: list[str], settings: Settings, log_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start `vigil ARGS` as a child process with `settings`."""
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "vigil.cli", *args], env=env_for(settings, **extra),
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(errors="replace").splitlines()


class NoClose:
    """Share one loaded model across in-process scorer runs."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.threshold = inner.threshold
        self.model = getattr(inner, "model", None)

    @property
    def context_turns(self) -> int:
        return int(getattr(self._inner, "context_turns", 1))

    def score(self, texts: list[str], histories: Any = None) -> Any:
        return self._inner.score(texts, histories)

    def submit(self, texts: list[str], histories: Any = None) -> Any:
        return self._inner.submit(texts, histories)

    def close(self) -> None:
        pass


def run_scorer(settings: Settings, resilient: Any, max_idle_s: float = 4.0, response_model: Any = None) -> Any:
    """Run the scorer in this process until it has been idle for `max_idle_s` (with `response_model`, the AI's
    replies in conversations with crisis signs are scored too, as `vigil score` does)."""
    from pipeline.scorer import Scorer

    scorer = Scorer(settings, NoClose(resilient), response_model=response_model)
    scorer.run(max_idle_s=max_idle_s)
    return scorer


def signed(settings: Settings, label: ClinicianLabel) -> ClinicianLabel:
    """`label` signed as the review app signs it, its reviewer an enabled account (created if missing): the
    evaluator counts no other label."""
    import redis

    from review.users import UserStore
    from vigil_core.label_signing import LabelSigner

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(client, settings.redis_prefix)
    if users.get(label.reviewer_id) is None:
        users.add(label.reviewer_id, "reviewer", "a reviewer's password")
    client.close()
    return LabelSigner.from_settings(settings).sign(label)


def model_copy(tmp: Path, name: str, **meta: Any) -> Path:
    """A copy of the shipped model directory (without its card and pictures) with `meta` laid over its
    vigil_model.json: another version of the store (another content hash), e.g. another threshold."""
    import shutil

    from models.artifact import DEFAULT_MODEL_DIR

    out = tmp / name
    shutil.copytree(DEFAULT_MODEL_DIR, out, ignore=shutil.ignore_patterns("*.png", "MODEL_CARD.md"))
    path = out / "vigil_model.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **meta}))
    return out
