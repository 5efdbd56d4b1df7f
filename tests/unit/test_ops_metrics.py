"""The metrics the blind-spot alerts read: the review queue's age against its deadlines, the notification outbox,
which Vigil a process runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from incidents.outbox import OutboxCollector
from review.outcomes import QueueCollector
from review.queue import QueueItem
from vigil_core.build import register_build_info, vigil_version


class _Queue:
    def __init__(self, items: list[QueueItem]) -> None:
        self.items = items

    def pending(self, limit: int) -> list[QueueItem]:
        return self.items[:limit]


def _item(cid: str, reason: str, minutes_ago: float, stage: str = "first") -> QueueItem:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return QueueItem(cid, {"reason": reason, "requested_at": at.isoformat(), "max_score": 0.5}, stage, [])


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_queue_age_and_overdue_items_per_reason():
    registry = CollectorRegistry()
    registry.register(QueueCollector(_Queue([
        _item("u1", "urgent", 20), _item("u2", "urgent", 5), _item("f1", "flagged", 30),
        _item("f2", "flagged", 90), _item("s1", "sampled", 60 * 30), _item("d1", "flagged", 500, stage="done"),
    ])))
    assert _sample(registry, "vigil_review_queue_items", reason="urgent") == 2
    assert _sample(registry, "vigil_review_queue_overdue_items", reason="urgent") == 1  # 20 min > 15 min
    assert _sample(registry, "vigil_review_queue_overdue_items", reason="flagged") == 1  # 90 min > 1 h; done not
    assert 89 * 60 < _sample(registry, "vigil_review_queue_oldest_age_seconds", reason="flagged") < 91 * 60
    assert _sample(registry, "vigil_review_queue_overdue_items", reason="sampled") == 1  # 30 h > 24 h
    assert _sample(registry, "vigil_review_queue_items", reason="borderline") == 0  # present at 0 for the alerts


def test_outbox_depth_and_oldest_age():
    class Outbox:
        def pending(self):
            return [{"created": time.time() - 400}, {"created": time.time() - 10}]

    registry = CollectorRegistry()
    registry.register(OutboxCollector(Outbox()))  # type: ignore[arg-type]
    assert _sample(registry, "vigil_outbox_entries") == 2
    assert 399 < _sample(registry, "vigil_outbox_oldest_age_seconds") < 402


def test_build_info_names_the_version():
    registry = CollectorRegistry()
    register_build_info(registry)
    text = generate_latest(registry).decode()
    assert 'vigil_build_info{python="' in text and f'version="{vigil_version()}"' in text


@pytest.mark.attack
def test_a_failed_notifier_never_says_its_url_path_which_is_its_credential():
    """Issue 35 (defect 6): a failed Slack delivery stored the webhook URL (the credential) as `last_error`."""
    import socket

    import pytest

    from incidents.notifiers import NotifyError, SlackNotifier

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    secret_path = "/services/T000CANARY/B000CANARY/XXXXCANARYXXXX"
    with pytest.raises(NotifyError) as err:
        SlackNotifier(f"http://127.0.0.1:{port}{secret_path}", timeout_s=2).send(
            {"severity": "P0", "title": "t", "incident_id": "INC-1", "action": "trigger"})
    assert "CANARY" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)
