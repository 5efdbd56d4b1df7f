"""The overview (rates, rule states, the recall chart, queue size) and the audit page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from evaluators.store import EvaluatorStore
from review.chart import recall_chart
from review.context import ReviewContext, context
from review.routes.auth import AUDIT_READERS, current_user, require
from review.routes.model import COMPARISON_TTL_S, model_view
from review.users import User

__all__ = ["router"]

# The audit page shows the newest this many entries.
AUDIT_SHOWN = 500

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, user: User = Depends(current_user),
                   ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    s = ctx.settings
    store = EvaluatorStore(ctx.redis, s.redis_prefix, s.label_wait_s)
    history = store.history()
    rates = history[-1]["rates"] if history else {}
    recall = ctx.rules.rules.crisis_recall
    chart = recall_chart(history, warning_below=recall.warning_below, critical_below=recall.critical_below)
    return ctx.page(request, "overview.html", rates=rates, states=store.states(), chart=chart,
                    queue_size=len(ctx.queue.pending(1000)), model=model_view(ctx),
                    comparison_ttl_s=COMPARISON_TTL_S)


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, user: User = Depends(require(*AUDIT_READERS)),
                     ctx: ReviewContext = Depends(context)) -> HTMLResponse:
    # the halt history and the access audit are two streams; shown together, newest first (ids are times)
    merged = sorted(ctx.halt.audit(AUDIT_SHOWN) + ctx.access.entries(AUDIT_SHOWN), key=_stream_order)
    return ctx.page(request, "audit.html", entries=list(reversed(merged))[:AUDIT_SHOWN])


def _stream_order(entry: dict[str, str]) -> tuple[int, int]:
    ms, _, seq = entry["id"].partition("-")
    return int(ms), int(seq or 0)
