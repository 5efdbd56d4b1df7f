"""A person at risk: hand a conversation to a human, end the handoff, record what was done (issue 22)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from review.context import ReviewContext, context
from review.outcomes import OUTCOMES
from review.routes.auth import check_csrf, require
from review.users import User
from vigil_core.roles import CLINICAL_LEAD, REVIEWER

__all__ = ["router", "CLINICIANS"]

router = APIRouter()
# Clinicians act on a person at risk; the on-call engineer and the admin do not.
CLINICIANS = (REVIEWER, CLINICAL_LEAD)


@router.post("/conversations/{cid}/handoff", dependencies=[Depends(check_csrf)])
async def start_handoff(request: Request, cid: str, reason: str = Form(""), user: User = Depends(require(*CLINICIANS)),
                        ctx: ReviewContext = Depends(context)) -> Response:
    if not reason.strip():
        raise HTTPException(400, "say why the conversation goes to a human")
    ctx.handoffs.start(cid, by=user.name, reason=reason.strip()[:500])
    ctx.audit(user.name, "handoff.start", request, conversation_id=cid)
    return RedirectResponse(f"/conversations/{cid}", status_code=303)


@router.post("/conversations/{cid}/handoff/end", dependencies=[Depends(check_csrf)])
async def end_handoff(request: Request, cid: str, reason: str = Form(""), user: User = Depends(require(*CLINICIANS)),
                      ctx: ReviewContext = Depends(context)) -> Response:
    if not reason.strip():
        raise HTTPException(400, "say why the AI may answer this person again")
    if ctx.outcomes.get(cid) is None:
        raise HTTPException(409, "record what was done for this person before ending the handoff")
    ctx.handoffs.end(cid, by=user.name, reason=reason.strip()[:500])
    ctx.audit(user.name, "handoff.end", request, conversation_id=cid)
    return RedirectResponse(f"/conversations/{cid}", status_code=303)


@router.post("/conversations/{cid}/outcome", dependencies=[Depends(check_csrf)])
async def record_outcome(request: Request, cid: str, outcome: str = Form(""), note: str = Form(""),
                         user: User = Depends(require(*CLINICIANS)), ctx: ReviewContext = Depends(context)) -> Response:
    if outcome not in OUTCOMES:
        raise HTTPException(400, f"outcome must be one of {sorted(OUTCOMES)}")
    item = ctx.queue.get(cid)
    ctx.outcomes.record(cid, outcome, user.name, note, item.requested_at if item is not None else None)
    # the outcome closes the conversation's urgent case, if it has one open (its clock stops)
    case = ctx.cases.get(cid)
    if case is not None and case.state != "closed":
        ctx.cases.close(cid, user.name, outcome)
    ctx.audit(user.name, "outcome.record", request, conversation_id=cid, outcome=outcome)
    return RedirectResponse(f"/conversations/{cid}", status_code=303)
