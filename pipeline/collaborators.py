"""What the scorer asks of the parts it is given, as Protocols: the crisis model, the reply model, the live-model
switch and the shadow. The real ones are `models.resilient.ResilientScorer`, `models.response_safety.
ResponseSafetyModel`, `pipeline.live_models.LiveModelSwitch` and `pipeline.shadow.ShadowScorer`; a test or a tool
may hand in anything that does the same, and mypy checks the scorer uses nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from models.resilient import PendingScores, Predictor
    from vigil_core.contracts import ConversationMessage
    from vigil_core.model_record import LiveModels

__all__ = ["TurnModel", "ReplyModel", "ModelSwitch", "Shadow", "SwitchTo"]


class TurnModel(Protocol):
    """Scores user turns off the consume loop, the classifier within a time limit, else its backup."""

    threshold: float
    model: Predictor | None  # the classifier it runs (None: the backup alone)

    @property
    def context_turns(self) -> int:
        """User turns in a turn's context, itself included."""
        ...

    def submit(self, texts: Sequence[str], histories: Sequence[Sequence[Any]] | None = None) -> PendingScores:
        """Start scoring `texts`, each with its conversation's earlier user turns; the result comes later."""
        ...

    def close(self) -> None: ...


class ReplyModel(Protocol):
    """Scores the AI's replies, each with the user turns before it; pages at `page_threshold`."""

    version: str
    page_threshold: float

    def score(self, contexts: Sequence[str], responses: Sequence[str]) -> np.ndarray: ...


class SwitchTo(Protocol):
    """What the live-model record names, loaded: the champion (None: keep the current one) and the shadow."""

    @property
    def record(self) -> LiveModels: ...

    @property
    def champion(self) -> Predictor | None: ...

    @property
    def shadow(self) -> Predictor | None: ...


class ModelSwitch(Protocol):
    """Follows the live-model record and hands over what it names once loaded."""

    def load(self, live: LiveModels | None = None, shadow: bool = True) -> SwitchTo: ...

    def poll(self) -> SwitchTo | None: ...

    def close(self) -> None: ...


class Shadow(Protocol):
    """Scores a share of the user turns with a candidate, on a thread of its own."""

    version: str
    share: float
    classifier: Predictor

    def submit(self, user: list[ConversationMessage], champion_version: str) -> None: ...

    def drain(self, timeout_s: float) -> bool: ...

    def close(self, timeout_s: float = 5.0) -> None: ...
