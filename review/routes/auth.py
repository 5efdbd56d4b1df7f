"""Login, logout, API tokens, and the dependencies every other route uses: who is asking, may they, CSRF."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature
from starlette.concurrency import run_in_threadpool

from review.api_models import SessionRequest
from review.context import SESSION_COOKIE, SESSION_MAX_AGE_S, ReviewContext, context
from review.users import User
from vigil_core.roles import ADMIN, CLINICAL_LEAD, ONCALL_ENGINEER, REVIEWER

__all__ = ["router", "AuthRefused", "current_user", "require", "check_csrf", "check_csrf_header", "LABELLERS",
           "ADJUDICATORS", "AUDIT_READERS", "INCIDENT_ACTORS"]

LABELLERS = {REVIEWER, CLINICAL_LEAD}
ADJUDICATORS = {CLINICAL_LEAD}
AUDIT_READERS = {ADMIN, CLINICAL_LEAD}
INCIDENT_ACTORS = {CLINICAL_LEAD, ONCALL_ENGINEER, ADMIN}

router = APIRouter()


class AuthRefused(Exception):
    """A request without a valid session (401), of a role that may not (403), or throttled (429)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def current_user(request: Request, ctx: ReviewContext = Depends(context)) -> User:
    """The user of the request's bearer token or session cookie; refused (and audited) if none. Every page or
    API read by a user is audited as a view: who saw what, and when."""
    auth = request.headers.get("authorization", "")
    name = None
    if auth.lower().startswith("bearer "):
        try:
            token = ctx.token_signer.loads(auth[7:].strip(), max_age=SESSION_MAX_AGE_S)
            name = token["u"] if ctx.sessions.valid(token.get("sid"), str(token["u"])) else None
        except (BadSignature, KeyError, TypeError, AttributeError):
            name = None
    else:
        sess = ctx.session_of(request)
        name = sess.get("u") if sess else None
    user = ctx.users.get(name) if name else None
    if user is None or user.disabled:
        ctx.audit(name or "anonymous", "access.refused", request, reason="no valid session")
        raise AuthRefused(401, "login required")
    request.state.user = user
    if request.method == "GET":
        ctx.audit(user.name, "view", request)
    return user


def require(*roles: str) -> Any:
    """A dependency that lets only `roles` through (others are refused with 403 and audited)."""

    def dep(request: Request, user: User = Depends(current_user), ctx: ReviewContext = Depends(context)) -> User:
        if user.role not in roles:
            ctx.audit(user.name, "access.refused", request, reason=f"role {user.role}")
            raise AuthRefused(403, "your role may not do this")
        return user

    return dep


def _cookie_session(request: Request, ctx: ReviewContext) -> dict[str, Any] | None:
    """The cookie session a CSRF token is checked against; None for API token requests (browsers do not send
    them on their own: no CSRF exposure); refused (and audited) without a valid session."""
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return None
    sess = ctx.session_of(request)
    if not sess:
        ctx.audit("anonymous", "access.refused", request, reason="no valid session")
        raise AuthRefused(401, "login required")
    return sess


def _match_csrf(request: Request, ctx: ReviewContext, sess: dict[str, Any], supplied: str) -> None:
    if not secrets.compare_digest(supplied, str(sess.get("csrf", ""))):
        ctx.audit(sess.get("u", "anonymous"), "access.refused", request, reason="csrf")
        raise AuthRefused(403, "invalid or missing CSRF token")


async def check_csrf(request: Request, ctx: ReviewContext = Depends(context)) -> None:
    """A form post must carry its session's CSRF token (API token requests are exempt)."""
    sess = _cookie_session(request, ctx)
    if sess is not None:
        form = await request.form()
        _match_csrf(request, ctx, sess, str(form.get("csrf", "")))


async def check_csrf_header(request: Request, ctx: ReviewContext = Depends(context)) -> None:
    """A JSON post with a session cookie must carry its CSRF token in `X-CSRF-Token` (as forms carry theirs);
    API token requests are exempt."""
    sess = _cookie_session(request, ctx)
    if sess is not None:
        _match_csrf(request, ctx, sess, request.headers.get("x-csrf-token", ""))


async def _login(ctx: ReviewContext, request: Request, username: str, password: str) -> User | None:
    address = ctx.origin(request)
    delay = ctx.throttle.attempt(username, address)
    if delay is None:
        ctx.audit(username, "login.throttled", request)
        raise AuthRefused(429, "too many failed logins; try again later")
    if delay:
        await asyncio.sleep(delay)  # many failures for this name from everywhere: slowed, not locked
    # argon2 takes tens of milliseconds of CPU: off the event loop, so other requests go on meanwhile
    user = await run_in_threadpool(ctx.users.authenticate, username, password)
    if user is None:
        ctx.audit(username, "login.failed", request)
        return None
    ctx.throttle.succeeded(username, address)
    ctx.audit(user.name, "login", request, role=user.role)
    return user


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    return ctx.templates.TemplateResponse(request, "login.html", {"error": None, "user": None, "csrf": ""})


@router.post("/login")
async def login(request: Request, username: str = Form(""), password: str = Form(""),
                ctx: ReviewContext = Depends(context)) -> Response:
    try:
        user = await _login(ctx, request, username, password)
    except AuthRefused as exc:
        return ctx.templates.TemplateResponse(request, "login.html", {"error": exc.detail, "user": None, "csrf": ""},
                                              status_code=exc.status)
    if user is None:
        return ctx.templates.TemplateResponse(request, "login.html",
                                              {"error": "wrong name or password", "user": None, "csrf": ""},
                                              status_code=401)
    resp = RedirectResponse("/queue" if user.role in LABELLERS else "/", status_code=303)
    cookie = ctx.signer.dumps({"u": user.name, "csrf": secrets.token_urlsafe(24), "sid": ctx.sessions.start(user.name)})
    resp.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_MAX_AGE_S, httponly=True, samesite="strict",
                    secure=ctx.settings.review_secure_cookies, path="/")
    return resp


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request, user: User = Depends(current_user),
                 ctx: ReviewContext = Depends(context)) -> Response:
    ctx.sessions.end((ctx.session_of(request) or {}).get("sid"))  # the cookie is dead wherever it is
    ctx.audit(user.name, "logout", request)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.post("/api/v1/session")
async def api_session(request: Request, body: SessionRequest, ctx: ReviewContext = Depends(context)) -> JSONResponse:
    try:
        user = await _login(ctx, request, body.username, body.password)
    except AuthRefused as exc:
        return JSONResponse({"error": exc.detail}, status_code=exc.status)
    if user is None:
        return JSONResponse({"error": "wrong name or password"}, status_code=401)
    return JSONResponse({"token": ctx.token_signer.dumps({"u": user.name, "sid": ctx.sessions.start(user.name)}),
                         "role": user.role, "expires_in": SESSION_MAX_AGE_S})


@router.delete("/api/v1/session")
async def api_logout(request: Request, user: User = Depends(current_user),
                     ctx: ReviewContext = Depends(context)) -> Response:
    """End the API session of this token."""
    try:
        token = ctx.token_signer.loads(request.headers.get("authorization", "")[7:].strip(),
                                       max_age=SESSION_MAX_AGE_S)
        ctx.sessions.end(token.get("sid"))
    except (BadSignature, AttributeError):
        pass  # a cookie session: logged out with POST /logout
    ctx.audit(user.name, "logout", request, via="api")
    return Response(status_code=204)
