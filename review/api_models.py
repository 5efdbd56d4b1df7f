"""The review app's JSON API request bodies as pydantic models: a body that does not fit is answered 422 with the
field named, never hand-parsed (routes/openapi.py serves the API's OpenAPI description to admins)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SessionRequest", "LabelRequest"]


class SessionRequest(BaseModel):
    """`POST /api/v1/session`: log in for a bearer token."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LabelRequest(BaseModel):
    """`POST /api/v1/labels`: a clinician's label of a conversation in the queue."""

    model_config = ConfigDict(extra="forbid")
    conversation_id: str = Field(min_length=1, max_length=128)
    level: Literal["no_risk", "low", "moderate", "high", "imminent"]
    first_crisis_turn: int | None = Field(default=None, ge=0, description="the first turn showing the crisis")
    confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    note: str | None = Field(default=None, max_length=4000)
