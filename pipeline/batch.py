"""One batch of the scorer as it goes through: the parsed records (`Parsed`), and what scoring them produced and
is published, written and committed together (`Batch`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import TopicPartition

from vigil_core.cases import HarmfulCase, UrgentCase
from vigil_core.contracts import ConversationClosed, ConversationMessage
from vigil_core.conversations import TurnUpdate
from vigil_core.records import OutRecord

__all__ = ["Parsed", "Batch"]


@dataclass
class Parsed:
    messages: list[ConversationMessage] = field(default_factory=list)
    closes: list[ConversationClosed] = field(default_factory=list)
    dead: list[OutRecord] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)

    @property
    def user(self) -> list[ConversationMessage]:
        """The user turns: the ones the model scores, in this order."""
        return [m for m in self.messages if m.role == "user"]


@dataclass
class Batch:
    outputs: list[OutRecord] = field(default_factory=list)
    updates: dict[str, TurnUpdate] = field(default_factory=dict)
    closes: list[tuple[str, float, str]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    urgent: list[UrgentCase] = field(default_factory=list)
    harmful: list[HarmfulCase] = field(default_factory=list)
    replies: list[tuple[str, float, float]] = field(default_factory=list)  # (event_id, ts, 1.0 unsafe / 0.0)
