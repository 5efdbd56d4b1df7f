"""The review queue, the conversation view and labelling (pages and JSON API)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from review.api_models import LabelRequest
from review.context import ReviewContext, context
from review.outcomes import OUTCOMES
from review.redaction import redact
from review.routes.auth import ADJUDICATORS, LABELLERS, check_csrf, check_csrf_header, require
from review.routes.handoff import CLINICIANS
from review.users import User
from vigil_core.clock import utcnow
from vigil_core.contracts import LEVELS, ClinicianLabel
from vigil_core.errors import BrokerUnavailable, VigilError
from vigil_core.records import OutRecord

__all__ = ["router", "LEVEL_DEFINITIONS"]

# C-SSRS-based definitions shown on the label form (docs/design.md section 3 levels).
LEVEL_DEFINITIONS = {
    "no_risk": "No risk: no wish to be dead, no suicidal thoughts, no self-harm.",
    "low": "Low: distress, hopelessness or a passive wish to be dead without thoughts of acting (C-SSRS 1).",
    "moderate": "Moderate: active suicidal thoughts without method, intent or plan (C-SSRS 2-3).",
    "high": "High: suicidal thoughts with intent or a plan, or recent self-harm or preparatory behaviour (C-SSRS 4-5).",
    "imminent": "Imminent: intent with means at hand or an attempt in progress; needs emergency response now.",
}
# A label is confirmed to the reviewer only once the broker acknowledged it; this long they wait at most.
LABEL_ACK_TIMEOUT_S = 10

router = APIRouter()


def _view_model(ctx: ReviewContext, cid: str, user: User) -> dict[str, Any]:
    item = ctx.queue.get(cid)
    if item is None:
        raise HTTPException(404, "no such conversation in review")
    req = item.request
    first_flagged = req.get("first_flagged_turn")
    turns = [{"turn": t["turn"], "role": t["role"], "text": redact(t["text"]), "score": t.get("score"),
              "response_risk": t.get("response_risk"), "response_paged": t.get("response_paged"),
              "response_paged_by": t.get("response_paged_by"),
              "language": t.get("language"), "flagged_by": t.get("flagged_by"), "warning_sign": t.get("warning_sign"),
              "flagged": first_flagged is not None and t["turn"] == first_flagged} for t in req["turns"]]
    return {"cid": cid, "reason": req["reason"], "pi": req["pi"], "max_score": req["max_score"],
            "language": req.get("language"), "validated": ctx.settings.validated,
            "handoff": ctx.handoffs.get(cid), "outcome": ctx.outcomes.get(cid), "outcomes": OUTCOMES,
            "may_act": user.role in CLINICIANS, "deadline": item.deadline, "overdue": item.overdue(utcnow()),
            "first_flagged_turn": first_flagged, "turns": turns, "stage": item.stage,
            "omitted_turns": int(req.get("omitted_turns", 0)),
            "labels": ctx.queue.visible_labels(item, user.name, user.role in ADJUDICATORS),
            "can_label": ctx.queue.can_label(cid, user.name, user.role in ADJUDICATORS)}


def _publish_label(ctx: ReviewContext, user: User, cid: str, level: str, first_crisis_turn: int | None,
                   confidence: float, note: str | None) -> ClinicianLabel:
    if level not in LEVELS:
        raise ValueError("choose one of the five levels")
    if not ctx.queue.can_label(cid, user.name, user.role in ADJUDICATORS):
        raise PermissionError("you cannot label this conversation now")
    item = ctx.queue.get(cid)
    label = ClinicianLabel(label_id=f"{cid}:{user.name}:{secrets.token_hex(4)}", conversation_id=cid,
                           level=level, first_crisis_turn=first_crisis_turn, reviewer_id=user.name,  # type: ignore[arg-type]
                           confidence=confidence, ts=utcnow(), note=note or None,
                           adjudication=item is not None and item.stage == "adjudication")
    label = ctx.label_signer.sign(label)  # the evaluator counts only labels signed by this app
    ctx.producer.send_all([OutRecord(ctx.settings.topic_labels, cid, label.to_bytes())],
                          timeout_s=LABEL_ACK_TIMEOUT_S)
    ctx.queue.record(label)
    return label


@router.get("/queue", response_class=HTMLResponse)
async def queue_page(request: Request, user: User = Depends(require(*LABELLERS)),
                     ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    return ctx.page(request, "queue.html", items=ctx.queue.pending(100), now=utcnow())


@router.post("/queue/claim", dependencies=[Depends(check_csrf)])
async def claim(request: Request, user: User = Depends(require(*LABELLERS)),
                ctx: ReviewContext = Depends(context)) -> Response:
    cid = ctx.queue.claim(user.name, user.role in ADJUDICATORS)
    if cid is None:
        return RedirectResponse("/queue?empty=1", status_code=303)
    return RedirectResponse(f"/conversations/{cid}", status_code=303)


@router.get("/conversations/{cid}", response_class=HTMLResponse)
async def conversation(request: Request, cid: str, judged: int | None = None,
                       user: User = Depends(require(*LABELLERS)),
                       ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    vm = _view_model(ctx, cid, user)
    ctx.audit(user.name, "conversation.view", request, conversation_id=cid)
    return ctx.page(request, "conversation.html", **vm, levels=LEVELS, definitions=LEVEL_DEFINITIONS, form={},
                    error=None, judged=judged)


@router.post("/conversations/{cid}/label", dependencies=[Depends(check_csrf)])
async def label_form(request: Request, cid: str, level: str = Form(""), first_crisis_turn: str = Form(""),
                     confidence: str = Form("0.8"), note: str = Form(""), user: User = Depends(require(*LABELLERS)),
                     ctx: ReviewContext = Depends(context)) -> Response:
    form = {"level": level, "first_crisis_turn": first_crisis_turn, "confidence": confidence, "note": note}
    try:
        turn = int(first_crisis_turn) if first_crisis_turn.strip() else None
        label = _publish_label(ctx, user, cid, level, turn, float(confidence), note)
    except (ValueError, PermissionError, BrokerUnavailable, VigilError) as exc:
        status = 503 if isinstance(exc, BrokerUnavailable) else 400
        error = ("the label was NOT saved: the message broker did not confirm it. Your answers are kept; "
                 "try again." if status == 503 else f"the label was NOT saved: {exc}")
        return ctx.page(request, "conversation.html", status=status, **_view_model(ctx, cid, user), levels=LEVELS,
                        definitions=LEVEL_DEFINITIONS, form=form, error=error)
    ctx.audit(user.name, "label", request, conversation_id=cid, label_id=label.label_id, level=level)
    return RedirectResponse(f"/queue?saved={cid}", status_code=303)


@router.get("/api/v1/queue")
async def api_queue(request: Request, user: User = Depends(require(*LABELLERS)),
                    ctx: ReviewContext = Depends(context)) -> JSONResponse:
    return JSONResponse([{"conversation_id": i.conversation_id, "reason": i.reason, "max_score": i.max_score,
                          "stage": i.stage} for i in ctx.queue.pending(100)])


@router.get("/api/v1/conversations/{cid}")
async def api_conversation(request: Request, cid: str, user: User = Depends(require(*LABELLERS)),
                           ctx: ReviewContext = Depends(context)) -> JSONResponse:
    vm = _view_model(ctx, cid, user)
    ctx.audit(user.name, "conversation.view", request, conversation_id=cid, via="api")
    # the view model holds datetimes, a Handoff and a set: encoded as FastAPI encodes a response model (issue 35)
    return JSONResponse(jsonable_encoder(vm))


@router.post("/api/v1/labels", dependencies=[Depends(check_csrf_header)])
async def api_label(request: Request, body: LabelRequest, user: User = Depends(require(*LABELLERS)),
                    ctx: ReviewContext = Depends(context)) -> JSONResponse:
    cid = body.conversation_id
    try:
        label = _publish_label(ctx, user, cid, body.level, body.first_crisis_turn, body.confidence, body.note)
    except BrokerUnavailable as exc:
        return JSONResponse({"error": f"not saved: {exc}"}, status_code=503)
    except (ValueError, PermissionError, VigilError) as exc:
        return JSONResponse({"error": f"not saved: {exc}"}, status_code=400)
    ctx.audit(user.name, "label", request, conversation_id=cid, label_id=label.label_id, via="api")
    return JSONResponse({"label_id": label.label_id, "acknowledged": True}, status_code=201)
