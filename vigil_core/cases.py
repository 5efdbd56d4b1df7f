"""What the scorer hands the responders (incidents/urgent.py) for one person: an urgent conversation, a harmful
reply. Plain values, never message text."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UrgentCase", "HarmfulCase"]


@dataclass(frozen=True)
class UrgentCase:
    """A conversation that just crossed the urgent level: page a clinician, hand it to a human."""

    conversation_id: str
    turn: int
    score: float
    why: str  # "score" or "imminent phrase" (never the text)


@dataclass(frozen=True)
class HarmfulCase:
    """An AI reply judged unsafe in a conversation with crisis signs: P0 and handoff."""

    conversation_id: str
    turn: int
    score: float
    model_version: str
    why: str = "score"  # the model's page level, or "phrase (agrees)" / "phrase (encourages)" (never the text)
