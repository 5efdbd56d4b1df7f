"""What every route of the review app shares: the stores, the producer, the signers, the templates, the audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from evaluators.rules import Thresholds
from incidents.cases import CaseStore
from kafka_io import RecordProducer
from review.access import AccessAudit, LoginThrottle, Sessions
from review.outcomes import OutcomeStore
from review.queue import ReviewQueue
from review.users import UserStore
from safety_gate.halt import HaltStore
from safety_gate.handoff import HandoffStore
from vigil_core.label_signing import LabelSigner
from vigil_core.settings import Settings

__all__ = ["ReviewContext", "context", "SESSION_COOKIE", "SESSION_MAX_AGE_S", "HERE"]

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vigil_session"
# A clinician's working day: a session older than this logs in again.
SESSION_MAX_AGE_S = 8 * 3600


@dataclass
class ReviewContext:
    """The app's shared parts, built once by `create_app` and found by routes through `context(request)`."""

    settings: Settings
    redis: redis.Redis
    users: UserStore
    queue: ReviewQueue
    halt: HaltStore
    producer: RecordProducer
    signer: URLSafeTimedSerializer
    token_signer: URLSafeTimedSerializer
    templates: Jinja2Templates
    rules: Thresholds
    access: AccessAudit
    sessions: Sessions
    throttle: LoginThrottle
    label_signer: LabelSigner
    handoffs: HandoffStore
    outcomes: OutcomeStore
    cases: CaseStore
    # the champion/shadow comparison the overview shows, per live-record version: (computed at, view)
    comparisons: dict[int, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    @staticmethod
    def origin(request: Request) -> str:
        """The client address a request came from (for the audit and the login throttle)."""
        return request.client.host if request.client else "unknown"

    def audit(self, who: str, action: str, request: Request, **detail: Any) -> None:
        """Append who did what, from where, on which path, to the access audit stream."""
        self.access.record(who, action, self.origin(request), path=request.url.path, **detail)

    def session_of(self, request: Request) -> dict[str, Any] | None:
        """The signed session of the request's cookie, or None (missing, forged or expired)."""
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            sess = self.signer.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(sess, dict) or not self.sessions.valid(sess.get("sid"), str(sess.get("u", ""))):
            return None  # logged out (or a cookie from before server-side sessions)
        return sess

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """A rendered template with the user and the session's CSRF token."""
        sess = self.session_of(request) or {}
        ctx.update(user=getattr(request.state, "user", None), csrf=sess.get("csrf", ""))
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)


def context(request: Request) -> ReviewContext:
    """The app's context (a FastAPI dependency)."""
    return request.app.state.ctx  # type: ignore[no-any-return]
