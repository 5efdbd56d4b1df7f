"""Shared fixtures: a real tansu broker and a real valkey (Redis) server, started once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from demo.local import LocalBroker, LocalRedis  # noqa: E402
from vigil_core.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A real Kafka-protocol broker (tansu, memory storage) on a free port."""
    server = LocalBroker(log_dir=tmp_path_factory.mktemp("tansu"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A real Redis-protocol server (valkey) on a free port."""
    server = LocalRedis(log_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def uid() -> str:
    """A short unique suffix for topic, group and key names so tests never share state."""
    return uuid.uuid4().hex[:10]


TEST_LABEL_KEYS = "t1:" + "k" * 40


@pytest.fixture
def settings(broker: LocalBroker, redis_server: LocalRedis, uid: str) -> Settings:
    """Settings pointing at the session's broker and Redis, with per-test topics, groups and prefix."""
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        redis_url=redis_server.url,  # type: ignore[arg-type]
        redis_prefix=f"t{uid}:",
        topic_events=f"events-{uid}",
        topic_scores=f"scores-{uid}",
        topic_review=f"review-{uid}",
        topic_labels=f"labels-{uid}",
        topic_dlq=f"dlq-{uid}",
        topic_incidents=f"incidents-{uid}",
        topic_partitions=3,
        scorer_group=f"scorer-{uid}",
        evaluator_group=f"evaluator-{uid}",
        # this broker takes ~20 s to join a group with kafka-python defaults; ~3 s with these
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        label_keys=TEST_LABEL_KEYS,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache directory for derived model files (the int8 ONNX graph) for the whole session."""
    return tmp_path_factory.getbasetemp() / "model-cache"


@pytest.fixture(scope="session")
def resilient(model_cache):
    """The shipped default model wrapped with the backup scorer, loaded once per session."""
    from pipeline.commands import load_resilient_scorer

    return load_resilient_scorer(Settings(cache_dir=model_cache))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault suite's table of figures (tests/faults), when any of it ran."""
    from tests.faults.results import RESULTS, table

    if RESULTS:
        terminalreporter.write_sep("=", "fault suite: figures (docs/reliability.md)")
        terminalreporter.write_line(table())
