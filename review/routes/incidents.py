"""The incidents page: the list, acknowledging, notes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from incidents.service import IncidentService
from incidents.store import IncidentStore
from review.context import ReviewContext, context
from review.routes.auth import INCIDENT_ACTORS, check_csrf, current_user, require
from review.users import User
from vigil_core.model_record import ModelRecord

__all__ = ["router"]

# The incidents page shows the newest this many.
INCIDENTS_SHOWN = 100

router = APIRouter()


def _service(ctx: ReviewContext) -> IncidentService:
    return IncidentService(ctx.settings, ctx.redis, ctx.producer)


@router.get("/incidents", response_class=HTMLResponse)
async def incidents_page(request: Request, user: User = Depends(current_user),
                         ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    incidents = IncidentStore(ctx.redis, ctx.settings.redis_prefix).list()[:INCIDENTS_SHOWN]
    # A P0 that tripped the halt offers the first recovery step: the champion before the current one
    live = ModelRecord(ctx.redis, ctx.settings.redis_prefix).read()
    return ctx.page(request, "incidents.html", incidents=incidents, model=live,
                    message=request.query_params.get("message"))


@router.post("/incidents/{incident_id}/ack", dependencies=[Depends(check_csrf)])
async def incident_ack(request: Request, incident_id: str, user: User = Depends(require(*INCIDENT_ACTORS)),
                       ctx: ReviewContext = Depends(context)) -> Response:
    _service(ctx).acknowledge(incident_id, user.name)
    ctx.audit(user.name, "incident.ack", request, incident_id=incident_id)
    return RedirectResponse("/incidents", status_code=303)


@router.post("/incidents/{incident_id}/note", dependencies=[Depends(check_csrf)])
async def incident_note(request: Request, incident_id: str, text: str = Form(""),
                        user: User = Depends(require(*INCIDENT_ACTORS)),
                        ctx: ReviewContext = Depends(context)) -> Response:
    _service(ctx).note(incident_id, user.name, text)
    ctx.audit(user.name, "incident.note", request, incident_id=incident_id)
    return RedirectResponse("/incidents", status_code=303)
