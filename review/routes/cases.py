"""Urgent cases in the review app (issue 34): the crisis team's list with each case's clock, claim (so two clinicians
do not take the same person), release, hand to a colleague. Recording an outcome on the conversation closes its
case (review/routes/handoff.py). Every action is audited."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from incidents.cases import Case, CaseError
from review.context import ReviewContext, context
from review.routes.auth import check_csrf, require
from review.routes.handoff import CLINICIANS
from review.users import User

__all__ = ["router"]

router = APIRouter()


def _row(case: Case, now: datetime) -> dict[str, object]:
    left = case.seconds_left(now)
    return {**case.to_dict(), "seconds_left": round(left),
            "clock": (f"{int(left // 60)} min {int(left % 60):02d} s left" if left >= 0
                      else f"PAST DEADLINE by {int(-left // 60)} min")}


@router.get("/cases", response_class=HTMLResponse)
async def cases_page(request: Request, user: User = Depends(require(*CLINICIANS)),
                     ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    now = datetime.now(UTC)
    colleagues = [u for u in ctx.users.names_with_roles(CLINICIANS) if u != user.name]
    return ctx.page(request, "cases.html", cases=[_row(c, now) for c in ctx.cases.open_cases()],
                    colleagues=colleagues, message=request.query_params.get("message"))


@router.get("/api/v1/cases")
async def api_cases(request: Request, user: User = Depends(require(*CLINICIANS)),
                    ctx: ReviewContext = Depends(context)) -> JSONResponse:
    now = datetime.now(UTC)
    return JSONResponse([_row(c, now) for c in ctx.cases.open_cases()])


def _act(request: Request, ctx: ReviewContext, user: User, action: str, cid: str, to: str = "") -> Response:
    try:
        if action == "claim":
            ctx.cases.claim(cid, user.name)
        elif action == "release":
            ctx.cases.release(cid, user.name)
        else:
            colleague = ctx.users.get(to)
            if colleague is None or colleague.disabled or colleague.role not in CLINICIANS:
                raise CaseError("hand the case to a clinician of the team")
            ctx.cases.transfer(cid, user.name, to)
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.audit(user.name, f"case.{action}", request, conversation_id=cid, **({"to": to} if to else {}))
    return RedirectResponse("/cases", status_code=303)


@router.post("/cases/{cid}/claim", dependencies=[Depends(check_csrf)])
async def claim(request: Request, cid: str, user: User = Depends(require(*CLINICIANS)),
                ctx: ReviewContext = Depends(context)) -> Response:
    return _act(request, ctx, user, "claim", cid)


@router.post("/cases/{cid}/release", dependencies=[Depends(check_csrf)])
async def release(request: Request, cid: str, user: User = Depends(require(*CLINICIANS)),
                  ctx: ReviewContext = Depends(context)) -> Response:
    return _act(request, ctx, user, "release", cid)


@router.post("/cases/{cid}/transfer", dependencies=[Depends(check_csrf)])
async def transfer(request: Request, cid: str, to: str = Form(""), user: User = Depends(require(*CLINICIANS)),
                   ctx: ReviewContext = Depends(context)) -> Response:
    return _act(request, ctx, user, "transfer", cid, to.strip())
