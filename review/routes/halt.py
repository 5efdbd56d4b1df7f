"""The halt page: its state and history, the two-person clear, a clinical lead's manual trip."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from review.context import ReviewContext, context
from review.routes.auth import check_csrf, current_user, require
from review.users import User
from safety_gate.errors import HaltError
from vigil_core.label_signing import account_key
from vigil_core.roles import CLEAR_ROLES, CLINICAL_LEAD

__all__ = ["router"]

router = APIRouter()


@router.get("/halt", response_class=HTMLResponse)
async def halt_page(request: Request, user: User = Depends(current_user),
                    ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    record = ctx.halt.read()
    history = [a for a in ctx.halt.audit(500) if a.get("action", "").startswith("halt.")][-50:]
    return ctx.page(request, "halt.html", record=record, approvals=ctx.halt.approvals(record.version),
                    history=history, message=request.query_params.get("message"))


@router.post("/halt/approve", dependencies=[Depends(check_csrf)])
async def halt_approve(request: Request, reason: str = Form(""), version: int = Form(0),
                       user: User = Depends(require(*CLEAR_ROLES)), ctx: ReviewContext = Depends(context)) -> Response:
    try:
        lifted = ctx.halt.approve_clear(by=user.name, role=user.role, reason=reason, version=version,
                                        origin=ctx.origin(request),
                                        accounts_prefix=account_key(ctx.settings.redis_prefix, ""))
        message = "halt lifted" if lifted else "approval recorded; the other role must approve too"
    except HaltError as exc:
        message = f"not recorded: {exc}"
    return RedirectResponse(f"/halt?message={message}", status_code=303)


@router.post("/halt/trip", dependencies=[Depends(check_csrf)])
async def halt_trip(request: Request, reason: str = Form(""), user: User = Depends(require(CLINICAL_LEAD)),
                    ctx: ReviewContext = Depends(context)) -> Response:
    if not reason.strip():
        return RedirectResponse("/halt?message=a reason is required", status_code=303)
    ctx.halt.trip(by=user.name, reason=reason, origin=ctx.origin(request))
    return RedirectResponse("/halt?message=halted", status_code=303)
