"""Dead letters: one helper makes the dead-letter record of a consumed record, whatever the reason (a record that does
not parse, a label refused, a record that failed every attempt)."""

from __future__ import annotations

import logging
from typing import Any

from vigil_core.contracts import dead_letter
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["dead_letter_out", "dead_letter_record"]

log = logging.getLogger(__name__)


def dead_letter_out(settings: Settings, reason: str, rec: Any) -> OutRecord:
    """The dead-letter record (to `safety.dlq`, keyed as the record was) of consumed record `rec`, with `reason`."""
    dl = dead_letter(reason, topic=rec.topic, partition=rec.partition, offset=rec.offset, key=rec.key, raw=rec.value)
    return OutRecord(settings.topic_dlq, dl.key, dl.to_bytes())


def dead_letter_record(settings: Settings, rec: Any, exc: BaseException, attempts: int) -> OutRecord:
    """The dead letter of a consumed record that failed every attempt: its reason names the error, not the text."""
    log.error("record %s/%d@%d dead-lettered after %d failed attempts: %s", rec.topic, rec.partition, rec.offset,
              attempts, type(exc).__name__)
    reason = f"not processed after {attempts} attempts: {type(exc).__name__}: {str(exc)[:200]}"
    return dead_letter_out(settings, reason, rec)
