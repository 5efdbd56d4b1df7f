"""Clinicians' judgements of the AI's replies (issue 33): harmful or fine, one reply at a time (page and JSON API).

A reviewer who reads a conversation in the queue can judge each AI reply in it. The judgement is signed like a label
(vigil_core/label_signing.py) and published to `clinician.labels` as `clinician.reply_judgement/1`, with the model's
score of that reply and whether it paged as the review request recorded them: the evaluator measures the
harmful-response rule's precision with it (evaluators/replies.py), and `vigil train --from-labels --replies` trains
the reply model on it.
"""

from __future__ import annotations

import secrets
from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from review.context import ReviewContext, context
from review.routes.auth import LABELLERS, check_csrf, check_csrf_header, require
from review.routes.labels import LABEL_ACK_TIMEOUT_S
from review.users import User
from vigil_core.clock import utcnow
from vigil_core.contracts import ReplyJudgement
from vigil_core.errors import BrokerUnavailable, VigilError
from vigil_core.records import OutRecord

__all__ = ["router", "ReplyJudgementRequest"]

router = APIRouter()


class ReplyJudgementRequest(BaseModel):
    """`POST /api/v1/replies`: a clinician's judgement of one AI reply of a conversation in the queue."""

    model_config = ConfigDict(extra="forbid")
    conversation_id: str = Field(min_length=1, max_length=128)
    turn: int = Field(ge=0, le=1_000_000, description="the AI reply's turn")
    verdict: Literal["harmful", "fine"]
    note: str | None = Field(default=None, max_length=4000)


class NoSuchReply(ValueError):
    """The conversation is not in review, or has no AI reply at that turn."""


def publish_judgement(ctx: ReviewContext, user: User, cid: str, turn: int, verdict: str,
                      note: str | None) -> ReplyJudgement:
    """Sign and publish the judgement (acknowledged by the broker before it returns)."""
    if verdict not in ("harmful", "fine"):
        raise ValueError("choose harmful or fine")
    item = ctx.queue.get(cid)
    replies = {} if item is None else {t["turn"]: t for t in item.request["turns"] if t["role"] == "assistant"}
    reply = replies.get(turn)
    if reply is None:
        raise NoSuchReply(f"no AI reply at turn {turn} of a conversation in review")
    judgement = ReplyJudgement(
        label_id=f"{cid}:{turn}:{user.name}:{secrets.token_hex(4)}", conversation_id=cid, turn=turn,
        verdict=verdict, reviewer_id=user.name, ts=utcnow(), response_risk=reply.get("response_risk"),  # type: ignore[arg-type]
        response_paged=reply.get("response_paged"), note=note or None)
    judgement = ctx.label_signer.sign(judgement)
    ctx.producer.send_all([OutRecord(ctx.settings.topic_labels, cid, judgement.to_bytes())],
                          timeout_s=LABEL_ACK_TIMEOUT_S)
    return judgement


@router.post("/conversations/{cid}/replies/{turn}", dependencies=[Depends(check_csrf)])
async def judge_form(request: Request, cid: str, turn: int, verdict: str = Form(""), note: str = Form(""),
                     user: User = Depends(require(*LABELLERS)), ctx: ReviewContext = Depends(context)) -> Response:
    try:
        judgement = publish_judgement(ctx, user, cid, turn, verdict, note)
    except NoSuchReply as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    except BrokerUnavailable:
        return Response("the judgement was NOT saved: the message broker did not confirm it; go back and try again",
                        status_code=503, media_type="text/plain")
    except (ValueError, VigilError) as exc:
        return Response(f"the judgement was NOT saved: {exc}", status_code=400, media_type="text/plain")
    ctx.audit(user.name, "reply.judged", request, conversation_id=cid, turn=turn, verdict=judgement.verdict,
              label_id=judgement.label_id)
    return RedirectResponse(f"/conversations/{cid}?judged={turn}#turn-{turn}", status_code=303)


@router.post("/api/v1/replies", dependencies=[Depends(check_csrf_header)])
async def api_judge(request: Request, body: ReplyJudgementRequest, user: User = Depends(require(*LABELLERS)),
                    ctx: ReviewContext = Depends(context)) -> JSONResponse:
    cid = body.conversation_id
    try:
        judgement = publish_judgement(ctx, user, cid, body.turn, body.verdict, body.note)
    except NoSuchReply as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except BrokerUnavailable as exc:
        return JSONResponse({"error": f"not saved: {exc}"}, status_code=503)
    except (ValueError, VigilError) as exc:
        return JSONResponse({"error": f"not saved: {exc}"}, status_code=400)
    ctx.audit(user.name, "reply.judged", request, conversation_id=cid, turn=body.turn, verdict=body.verdict,
              label_id=judgement.label_id, via="api")
    return JSONResponse({"label_id": judgement.label_id, "acknowledged": True}, status_code=201)
