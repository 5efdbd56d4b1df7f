"""Errors of the crisis classifier."""

from __future__ import annotations

from vigil_core.errors import VigilError

__all__ = ["ModelError"]


class ModelError(VigilError, RuntimeError):
    """The classifier could not load or score; the backup scorer takes over."""
