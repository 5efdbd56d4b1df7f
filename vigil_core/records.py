"""A record to publish, as every service hands it to the Kafka producer (no Kafka import here)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OutRecord"]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to publish."""

    topic: str
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
