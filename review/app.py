"""The clinicians' review app: server-rendered pages (little JavaScript) and a JSON API.

Every route but the login page and static files needs a session cookie (signed, HttpOnly, SameSite
Strict) or an API token; every form carries a CSRF token; failed logins are throttled; every login,
view, label, halt action and refused access is written to the audit stream with who, what, when and
from where. Message text is escaped by the templates and identifiers in it are redacted.

This module builds the app; the routes live in `review/routes/` (one router per area), the shared parts
in `review/context.py`, the review-request consumer in `review/consumer.py`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import URLSafeTimedSerializer

from evaluators.rules import Thresholds
from incidents.cases import CaseStore
from incidents.config import IncidentConfig
from kafka_io import RecordProducer
from review.access import AccessAudit, LoginThrottle, Sessions
from review.body_limit import BodyLimit
from review.consumer import consume_review_requests
from review.context import HERE, SESSION_COOKIE, SESSION_MAX_AGE_S, ReviewContext
from review.outcomes import OutcomeStore, ReviewMetrics
from review.queue import ReviewQueue
from review.routes import auth, cases, halt, handoff, incidents, labels, model, openapi, overview, replies, webhooks
from review.routes.auth import AuthRefused
from review.routes.labels import LEVEL_DEFINITIONS
from review.users import UserStore
from safety_gate.halt import HaltStore
from safety_gate.handoff import HandoffStore
from vigil_core.label_signing import LabelSigner
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["create_app", "ROUTERS", "LEVEL_DEFINITIONS", "SESSION_COOKIE"]

# Every area's routes; the app includes exactly these.
ROUTERS = (auth.router, overview.router, labels.router, replies.router, halt.router, incidents.router, handoff.router,
           cases.router, model.router, webhooks.router, openapi.router)


def create_app(settings: Settings, secret: str | None = None, consume: bool = True,
               metrics: ReviewMetrics | None = None) -> FastAPI:
    """The app; `consume` starts a thread that feeds `safety.review` into the queue."""
    r = connect(settings.redis_url.get_secret_value())
    key = secret or settings.review_secret_value()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    ctx = ReviewContext(
        settings=settings, redis=r, users=UserStore(r, settings.redis_prefix),
        queue=ReviewQueue(r, settings.redis_prefix), halt=HaltStore(r, settings.redis_prefix),
        producer=RecordProducer(settings), signer=URLSafeTimedSerializer(key, salt="vigil-review-session"),
        token_signer=URLSafeTimedSerializer(key, salt="vigil-review-api"), templates=templates,
        rules=Thresholds.load(settings.thresholds_file), access=AccessAudit(r, settings.redis_prefix),
        sessions=Sessions(r, settings.redis_prefix, SESSION_MAX_AGE_S),
        throttle=LoginThrottle.for_logins(r, settings.redis_prefix),
        label_signer=LabelSigner.from_settings(settings),
        handoffs=HandoffStore(r, settings.redis_prefix), outcomes=OutcomeStore(r, settings.redis_prefix, metrics),
        cases=CaseStore(r, settings.redis_prefix,
                        timedelta(minutes=IncidentConfig.load(settings.incidents_file).cases.deadline_min)),
    )
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if consume:
            threading.Thread(target=consume_review_requests, args=(settings, ctx.queue, stop), daemon=True).start()
        yield
        stop.set()
        ctx.producer.close()

    app = FastAPI(title="Vigil review", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.ctx = ctx
    app.state.queue, app.state.users, app.state.halt, app.state.producer = ctx.queue, ctx.users, ctx.halt, ctx.producer

    @app.exception_handler(AuthRefused)
    async def _auth_error(request: Request, exc: AuthRefused) -> Response:
        if request.url.path.startswith("/api/") or exc.status == 403:
            return JSONResponse({"error": exc.detail}, status_code=exc.status)
        return RedirectResponse("/login", status_code=303)

    for router in ROUTERS:
        app.include_router(router)
    app.state.routes = [route for router in ROUTERS for route in router.routes]  # the OpenAPI document's
    app.add_middleware(BodyLimit)  # before any route reads a body (review/body_limit.py)
    return app
