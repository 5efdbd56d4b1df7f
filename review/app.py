"""The clinicians' review app: server-rendered pages (little JavaScript) and a JSON API.

Every route but the login page and static files needs a session cookie (signed, HttpOnly, SameSite
Strict) or an API token; every form carries a CSRF token; failed logins are throttled; every login,
view, label, halt action and refused access is written to the audit stream with who, what, when and
from where. Message text is escaped by the templates and identifiers in it are redacted.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipeline.contracts import LEVELS, ClinicianLabel, ReviewRequest, parse_event, utcnow
from pipeline.errors import BrokerUnavailable, VigilError
from pipeline.kafka_io import OutRecord, RecordProducer, make_consumer
from pipeline.settings import Settings
from review.queue import ReviewQueue
from review.redaction import redact
from review.users import User, UserStore
from safety_gate.errors import HaltError
from safety_gate.halt import HaltStore

__all__ = ["create_app", "LEVEL_DEFINITIONS", "SESSION_COOKIE"]

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vigil_session"
SESSION_MAX_AGE_S = 8 * 3600
MAX_LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 900

# C-SSRS-based definitions shown on the label form (DESIGN.md section 3 levels).
LEVEL_DEFINITIONS = {
    "no_risk": "No risk: no wish to be dead, no suicidal thoughts, no self-harm.",
    "low": "Low: distress, hopelessness or a passive wish to be dead without thoughts of acting (C-SSRS 1).",
    "moderate": "Moderate: active suicidal thoughts without method, intent or plan (C-SSRS 2-3).",
    "high": "High: suicidal thoughts with intent or a plan, or recent self-harm or preparatory behaviour (C-SSRS 4-5).",
    "imminent": "Imminent: intent with means at hand or an attempt in progress; needs emergency response now.",
}
LABELLERS = {"reviewer", "clinical_lead"}
ADJUDICATORS = {"clinical_lead"}
AUDIT_READERS = {"admin", "clinical_lead"}
INCIDENT_ACTORS = {"clinical_lead", "oncall_engineer", "admin"}


class _Auth(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def create_app(settings: Settings, secret: str | None = None, consume: bool = True) -> FastAPI:
    """The app; `consume` starts a thread that feeds `safety.review` into the queue."""
    r = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5)
    users = UserStore(r, settings.redis_prefix)
    queue = ReviewQueue(r, settings.redis_prefix)
    halt = HaltStore(r, settings.redis_prefix)
    key = secret or settings.review_secret_value()
    signer = URLSafeTimedSerializer(key, salt="vigil-review-session")
    token_signer = URLSafeTimedSerializer(key, salt="vigil-review-api")
    producer = RecordProducer(settings)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        thread = None
        if consume:
            thread = threading.Thread(target=_consume, args=(settings, queue, stop), daemon=True)
            thread.start()
        yield
        stop.set()
        producer.close()

    app = FastAPI(title="Vigil review", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.queue, app.state.users, app.state.halt, app.state.producer = queue, users, halt, producer

    def origin(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def audit(who: str, action: str, request: Request, **detail: Any) -> None:
        halt.audit_event(who, action, origin=origin(request), path=request.url.path, **detail)

    # -- authentication -----------------------------------------------------------------------------
    def session_of(request: Request) -> dict[str, Any] | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            return signer.loads(raw, max_age=SESSION_MAX_AGE_S)  # type: ignore[no-any-return]
        except BadSignature:
            return None

    def current_user(request: Request) -> User:
        auth = request.headers.get("authorization", "")
        name = None
        if auth.lower().startswith("bearer "):
            try:
                name = token_signer.loads(auth[7:].strip(), max_age=SESSION_MAX_AGE_S)["u"]
            except (BadSignature, KeyError, TypeError):
                name = None
        else:
            sess = session_of(request)
            name = sess.get("u") if sess else None
        user = users.get(name) if name else None
        if user is None or user.disabled:
            audit(name or "anonymous", "access.refused", request, reason="no valid session")
            raise _Auth(401, "login required")
        request.state.user = user
        return user

    def require(*roles: str) -> Any:
        def dep(request: Request, user: User = Depends(current_user)) -> User:
            if user.role not in roles:
                audit(user.name, "access.refused", request, reason=f"role {user.role}")
                raise _Auth(403, "your role may not do this")
            return user
        return dep

    async def check_csrf(request: Request) -> None:
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            return  # API tokens are not sent by browsers on their own: no CSRF exposure
        sess = session_of(request)
        if not sess:
            audit("anonymous", "access.refused", request, reason="no valid session")
            raise _Auth(401, "login required")
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf", "")), str(sess.get("csrf", ""))):
            audit(sess.get("u", "anonymous") if sess else "anonymous", "access.refused", request, reason="csrf")
            raise _Auth(403, "invalid or missing CSRF token")

    @app.exception_handler(_Auth)
    async def _auth_error(request: Request, exc: _Auth) -> Response:
        if request.url.path.startswith("/api/") or exc.status == 403:
            return JSONResponse({"error": exc.detail}, status_code=exc.status)
        return RedirectResponse("/login", status_code=303)

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        sess = session_of(request) or {}
        ctx.update(user=getattr(request.state, "user", None), csrf=sess.get("csrf", ""))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    # -- login --------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {"error": None, "user": None, "csrf": ""})

    def _login(request: Request, username: str, password: str) -> User | None:
        key = f"{settings.redis_prefix}review:login_fail:{username}:{origin(request)}"
        failures = int(r.get(key) or 0)
        if failures >= MAX_LOGIN_FAILURES:
            audit(username, "login.throttled", request)
            raise _Auth(429, "too many failed logins; try again later")
        user = users.authenticate(username, password)
        if user is None:
            pipe = r.pipeline()
            pipe.incr(key)
            pipe.expire(key, LOGIN_WINDOW_S)
            pipe.execute()
            audit(username, "login.failed", request)
            return None
        r.delete(key)
        audit(user.name, "login", request, role=user.role)
        return user

    @app.post("/login")
    async def login(request: Request, username: str = Form(""), password: str = Form("")) -> Response:
        try:
            user = _login(request, username, password)
        except _Auth as exc:
            return templates.TemplateResponse(request, "login.html", {"error": exc.detail, "user": None, "csrf": ""},
                                              status_code=exc.status)
        if user is None:
            return templates.TemplateResponse(request, "login.html",
                                              {"error": "wrong name or password", "user": None, "csrf": ""},
                                              status_code=401)
        resp = RedirectResponse("/queue" if user.role in LABELLERS else "/", status_code=303)
        cookie = signer.dumps({"u": user.name, "csrf": secrets.token_urlsafe(24)})
        resp.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_MAX_AGE_S, httponly=True, samesite="strict",
                        secure=settings.review_secure_cookies, path="/")
        return resp

    @app.post("/logout", dependencies=[Depends(check_csrf)])
    async def logout(request: Request, user: User = Depends(current_user)) -> Response:
        audit(user.name, "logout", request)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- overview -----------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request, user: User = Depends(current_user)) -> HTMLResponse:
        from evaluators.store import EvaluatorStore

        store = EvaluatorStore(r, settings.redis_prefix, settings.label_wait_s)
        history = store.history()
        rates = history[-1]["rates"] if history else {}
        states = store.states()
        return page(request, "overview.html", rates=rates, states=states, chart=_recall_chart(history),
                    queue_size=len(queue.pending(1000)))

    # -- queue and conversations --------------------------------------------------------------------
    @app.get("/queue", response_class=HTMLResponse)
    async def queue_page(request: Request, user: User = Depends(require(*LABELLERS))) -> HTMLResponse:
        return page(request, "queue.html", items=queue.pending(100))

    @app.post("/queue/claim", dependencies=[Depends(check_csrf)])
    async def claim(request: Request, user: User = Depends(require(*LABELLERS))) -> Response:
        cid = queue.claim(user.name, user.role in ADJUDICATORS)
        if cid is None:
            return RedirectResponse("/queue?empty=1", status_code=303)
        return RedirectResponse(f"/conversations/{cid}", status_code=303)

    def _view_model(cid: str, user: User) -> dict[str, Any]:
        item = queue.get(cid)
        if item is None:
            raise HTTPException(404, "no such conversation in review")
        req = item.request
        first_flagged = req.get("first_flagged_turn")
        turns = [{"turn": t["turn"], "role": t["role"], "text": redact(t["text"]), "score": t.get("score"),
                  "flagged": first_flagged is not None and t["turn"] == first_flagged} for t in req["turns"]]
        return {"cid": cid, "reason": req["reason"], "pi": req["pi"], "max_score": req["max_score"],
                "first_flagged_turn": first_flagged, "turns": turns, "stage": item.stage,
                "labels": queue.visible_labels(item, user.name, user.role in ADJUDICATORS),
                "can_label": queue.can_label(cid, user.name, user.role in ADJUDICATORS)}

    @app.get("/conversations/{cid}", response_class=HTMLResponse)
    async def conversation(request: Request, cid: str, user: User = Depends(require(*LABELLERS))) -> HTMLResponse:
        vm = _view_model(cid, user)
        audit(user.name, "conversation.view", request, conversation_id=cid)
        return page(request, "conversation.html", **vm, levels=LEVELS, definitions=LEVEL_DEFINITIONS, form={},
                    error=None)

    def _publish_label(user: User, cid: str, level: str, first_crisis_turn: int | None, confidence: float,
                       note: str | None) -> ClinicianLabel:
        if level not in LEVELS:
            raise ValueError("choose one of the five levels")
        if not queue.can_label(cid, user.name, user.role in ADJUDICATORS):
            raise PermissionError("you cannot label this conversation now")
        label = ClinicianLabel(label_id=f"{cid}:{user.name}:{secrets.token_hex(4)}", conversation_id=cid,
                               level=level, first_crisis_turn=first_crisis_turn, reviewer_id=user.name,  # type: ignore[arg-type]
                               confidence=confidence, ts=utcnow(), note=note or None)
        # Confirmed to the reviewer only once the broker has acknowledged it.
        producer.send_all([OutRecord(settings.topic_labels, cid, label.to_bytes())], timeout_s=10)
        queue.record(label)
        return label

    @app.post("/conversations/{cid}/label", dependencies=[Depends(check_csrf)])
    async def label_form(request: Request, cid: str, level: str = Form(""), first_crisis_turn: str = Form(""),
                         confidence: str = Form("0.8"), note: str = Form(""),
                         user: User = Depends(require(*LABELLERS))) -> Response:
        form = {"level": level, "first_crisis_turn": first_crisis_turn, "confidence": confidence, "note": note}
        try:
            turn = int(first_crisis_turn) if first_crisis_turn.strip() else None
            label = _publish_label(user, cid, level, turn, float(confidence), note)
        except (ValueError, PermissionError, BrokerUnavailable, VigilError) as exc:
            status = 503 if isinstance(exc, BrokerUnavailable) else 400
            error = ("the label was NOT saved: the message broker did not confirm it. Your answers are kept; "
                     "try again." if status == 503 else f"the label was NOT saved: {exc}")
            return page(request, "conversation.html", status=status, **_view_model(cid, user), levels=LEVELS,
                        definitions=LEVEL_DEFINITIONS, form=form, error=error)
        audit(user.name, "label", request, conversation_id=cid, label_id=label.label_id, level=level)
        return RedirectResponse(f"/queue?saved={cid}", status_code=303)

    # -- halt -----------------------------------------------------------------------------------------
    @app.get("/halt", response_class=HTMLResponse)
    async def halt_page(request: Request, user: User = Depends(current_user)) -> HTMLResponse:
        record = halt.read()
        history = [a for a in halt.audit(500) if a.get("action", "").startswith("halt.")][-50:]
        return page(request, "halt.html", record=record, approvals=halt.approvals(record.version), history=history,
                    message=request.query_params.get("message"))

    @app.post("/halt/approve", dependencies=[Depends(check_csrf)])
    async def halt_approve(request: Request, reason: str = Form(""), version: int = Form(0),
                           user: User = Depends(require("clinical_lead", "oncall_engineer"))) -> Response:
        try:
            lifted = halt.approve_clear(by=user.name, role=user.role, reason=reason, version=version,
                                        origin=origin(request))
            message = "halt lifted" if lifted else "approval recorded; the other role must approve too"
        except HaltError as exc:
            message = f"not recorded: {exc}"
        return RedirectResponse(f"/halt?message={message}", status_code=303)

    @app.post("/halt/trip", dependencies=[Depends(check_csrf)])
    async def halt_trip(request: Request, reason: str = Form(""),
                        user: User = Depends(require("clinical_lead"))) -> Response:
        if not reason.strip():
            return RedirectResponse("/halt?message=a reason is required", status_code=303)
        halt.trip(by=user.name, reason=reason, origin=origin(request))
        return RedirectResponse("/halt?message=halted", status_code=303)

    # -- incidents --------------------------------------------------------------------------------------
    @app.get("/incidents", response_class=HTMLResponse)
    async def incidents_page(request: Request, user: User = Depends(current_user)) -> HTMLResponse:
        from safety_gate.incidents import IncidentStore

        return page(request, "incidents.html", incidents=IncidentStore(r, settings.redis_prefix).list()[:100])

    @app.post("/incidents/{incident_id}/ack", dependencies=[Depends(check_csrf)])
    async def incident_ack(request: Request, incident_id: str,
                           user: User = Depends(require(*INCIDENT_ACTORS))) -> Response:
        from safety_gate.manager import IncidentManager

        manager = IncidentManager(settings, r, producer)
        manager.acknowledge(incident_id, user.name)
        audit(user.name, "incident.ack", request, incident_id=incident_id)
        return RedirectResponse("/incidents", status_code=303)

    @app.post("/incidents/{incident_id}/note", dependencies=[Depends(check_csrf)])
    async def incident_note(request: Request, incident_id: str, text: str = Form(""),
                            user: User = Depends(require(*INCIDENT_ACTORS))) -> Response:
        from safety_gate.manager import IncidentManager

        IncidentManager(settings, r, producer).note(incident_id, user.name, text)
        audit(user.name, "incident.note", request, incident_id=incident_id)
        return RedirectResponse("/incidents", status_code=303)

    # -- audit ------------------------------------------------------------------------------------------
    @app.get("/audit", response_class=HTMLResponse)
    async def audit_page(request: Request, user: User = Depends(require(*AUDIT_READERS))) -> HTMLResponse:
        return page(request, "audit.html", entries=list(reversed(halt.audit(500))))

    # -- JSON API -----------------------------------------------------------------------------------
    @app.post("/api/v1/session")
    async def api_session(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return JSONResponse({"error": "expected a JSON object with username and password"}, status_code=400)
        try:
            user = _login(request, str(body.get("username", "")), str(body.get("password", "")))
        except _Auth as exc:
            return JSONResponse({"error": exc.detail}, status_code=exc.status)
        if user is None:
            return JSONResponse({"error": "wrong name or password"}, status_code=401)
        return JSONResponse({"token": token_signer.dumps({"u": user.name}), "role": user.role,
                             "expires_in": SESSION_MAX_AGE_S})

    @app.get("/api/v1/queue")
    async def api_queue(request: Request, user: User = Depends(require(*LABELLERS))) -> JSONResponse:
        return JSONResponse([{"conversation_id": i.conversation_id, "reason": i.reason, "max_score": i.max_score,
                              "stage": i.stage} for i in queue.pending(100)])

    @app.get("/api/v1/conversations/{cid}")
    async def api_conversation(request: Request, cid: str, user: User = Depends(require(*LABELLERS))) -> JSONResponse:
        vm = _view_model(cid, user)
        audit(user.name, "conversation.view", request, conversation_id=cid, via="api")
        return JSONResponse(vm)

    @app.post("/api/v1/labels")
    async def api_label(request: Request, user: User = Depends(require(*LABELLERS))) -> JSONResponse:
        try:
            body = await request.json()
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        cid = str(body.get("conversation_id", ""))
        try:
            turn = body.get("first_crisis_turn")
            label = _publish_label(user, cid, str(body.get("level", "")), int(turn) if turn is not None else None,
                                   float(body.get("confidence", 0.8)), body.get("note"))
        except BrokerUnavailable as exc:
            return JSONResponse({"error": f"not saved: {exc}"}, status_code=503)
        except (ValueError, PermissionError, VigilError) as exc:
            return JSONResponse({"error": f"not saved: {exc}"}, status_code=400)
        audit(user.name, "label", request, conversation_id=cid, label_id=label.label_id, via="api")
        return JSONResponse({"label_id": label.label_id, "acknowledged": True}, status_code=201)

    return app


def _consume(settings: Settings, queue: ReviewQueue, stop: threading.Event) -> None:
    consumer = None
    while not stop.is_set():
        try:
            if consumer is None:
                consumer = make_consumer(settings, settings.review_group, [settings.topic_review])
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    try:
                        event = parse_event(rec.value, accept=frozenset({"safety.review_request/1"}))
                    except VigilError:
                        continue
                    if isinstance(event, ReviewRequest):
                        queue.add(event)
                consumer.commit()
        except Exception as exc:  # noqa: BLE001 - keep consuming after broker or Redis trouble
            log.warning("review consumer: %s", exc)
            stop.wait(1.0)
    if consumer is not None:
        consumer.close()


def _recall_chart(history: list[dict[str, Any]], width: int = 640, height: int = 200) -> dict[str, Any]:
    """Points of an SVG line chart of crisis recall over time, with the 95% and 90% lines."""
    pts = [(h["at"], h["rates"].get("crisis_recall", {})) for h in history]
    pts = [(t, r) for t, r in pts if r.get("value") is not None]
    lo_y = 0.5

    def y(v: float) -> float:
        return height - (max(v, lo_y) - lo_y) / (1 - lo_y) * height

    if not pts:
        return {"width": width, "height": height, "line": "", "band": "", "y95": y(0.95), "y90": y(0.90)}
    t0, t1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)

    def x(t: float) -> float:
        return (t - t0) / (t1 - t0) * width

    line = " ".join(f"{x(t):.1f},{y(r['value']):.1f}" for t, r in pts)
    band = " ".join(f"{x(t):.1f},{y(r['upper']):.1f}" for t, r in pts) + " " + " ".join(
        f"{x(t):.1f},{y(r['lower']):.1f}" for t, r in reversed(pts))
    return {"width": width, "height": height, "line": line, "band": band, "y95": y(0.95), "y90": y(0.90)}
