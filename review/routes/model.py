"""The crisis model on the overview (champion, shadow, their comparison) and the rollback a halt's P0 offers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from evaluators.compare import compare_live, promotion_check
from incidents.service import IncidentService
from review.context import ReviewContext, context
from review.routes.auth import check_csrf, require
from review.users import User
from vigil_core.model_record import ModelChangeRefused, ModelRecord
from vigil_core.roles import MODEL_ROLLBACK_ROLES

__all__ = ["router", "model_view", "COMPARISON_TTL_S"]

router = APIRouter()


# The comparison reads every labelled conversation of the label wait; the overview reuses one for this long (and
# never across a change of the live record), so a room of clinicians on the overview does not multiply that read.
COMPARISON_TTL_S = 30.0


def model_view(ctx: ReviewContext) -> dict[str, Any]:
    """The live record and, with a candidate in shadow, its comparison and whether it may be promoted."""
    s = ctx.settings
    live = ModelRecord(ctx.redis, s.redis_prefix).read()
    view: dict[str, Any] = {"live": live.to_dict(), "comparison": None, "promotion": None}
    if not live.shadow:
        return view
    cached = ctx.comparisons.get(live.version)
    if cached is not None and time.monotonic() - cached[0] < COMPARISON_TTL_S:
        return {**view, **cached[1]}
    found: dict[str, Any] = {"comparison": None, "promotion": None,
                             "computed_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
    comparison = compare_live(ctx.redis, s.redis_prefix, s.label_wait_s, live.shadow)
    if comparison is not None:
        found["comparison"] = comparison.to_dict()
        found["promotion"] = promotion_check(comparison, s.promote_max_recall_drop, s.promote_min_crisis).to_dict()
    ctx.comparisons.clear()  # one record version at a time
    ctx.comparisons[live.version] = (time.monotonic(), found)
    return {**view, **found}


@router.post("/model/rollback", dependencies=[Depends(check_csrf)])
async def model_rollback(request: Request, reason: str = Form(""), incident_id: str = Form(""),
                         user: User = Depends(require(*MODEL_ROLLBACK_ROLES)),
                         ctx: ReviewContext = Depends(context)) -> Response:
    if not reason.strip():
        return RedirectResponse("/incidents?message=" + quote("a reason is required"), status_code=303)
    try:
        live = ModelRecord(ctx.redis, ctx.settings.redis_prefix).rollback(user.name, reason)
    except ModelChangeRefused as exc:
        return RedirectResponse("/incidents?message=" + quote(f"not rolled back: {exc}"), status_code=303)
    ctx.audit(user.name, "model.rollback", request, incident_id=incident_id, champion=live.champion)
    IncidentService(ctx.settings, ctx.redis, ctx.producer).announce_model_change(live, incident_id)
    return RedirectResponse("/incidents?message=" + quote(f"rolled back to {live.champion}"), status_code=303)
