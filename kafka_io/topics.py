"""Vigil's topics: every one it reads or writes, created when missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from vigil_core.settings import Settings

__all__ = ["all_topics", "ensure_topics"]


def all_topics(settings: Settings) -> list[str]:
    """Every topic Vigil reads or writes."""
    return [
        settings.topic_events,
        settings.topic_scores,
        settings.topic_scores_shadow,
        settings.topic_review,
        settings.topic_labels,
        settings.topic_dlq,
        settings.topic_incidents,
    ]


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None, partitions: int | None = None) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name=t, num_partitions=partitions or settings.topic_partitions, replication_factor=1)
            for t in (topics or all_topics(settings))
            if t not in existing
        ]
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic])
    finally:
        admin.close()
