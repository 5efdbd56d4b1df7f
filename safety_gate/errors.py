"""Errors of the halt record and the two-person clear."""

from __future__ import annotations

from vigil_core.errors import VigilError

__all__ = ["HaltError", "InitRefused", "NotHalted", "StaleApproval", "ApprovalRefused"]


class HaltError(VigilError):
    """A halt-record change was refused."""


class InitRefused(HaltError):
    """`init` on a deployment that has had halt records: a missing record is lifted by the two-person clear."""


class NotHalted(HaltError):
    """A clear was asked for while the AI is running."""


class StaleApproval(HaltError):
    """An approval names a halt version that is no longer current (the halt changed since)."""

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(f"approval is for halt version {expected}, the current halt is version {current}")


class ApprovalRefused(HaltError):
    """An approval breaks the two-person rule (unknown role, or one person in both roles)."""
