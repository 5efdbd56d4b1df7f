"""PagerDuty v3 webhooks: what people do in PagerDuty reaches Vigil's incident.

An incident acknowledged in PagerDuty used to stay open in Vigil, which kept escalating it. `POST /webhooks/pagerduty`
takes PagerDuty's v3 webhook events, verifies their signature (`X-PagerDuty-Signature`: `v1=` HMAC-SHA256 of the raw
body with a subscription's secret, constant-time compared; several secrets allowed for rotation) and maps them onto
the Vigil incident whose dedup key PagerDuty carries as `incident_key` (an escalation's page carries
`{dedup}:escalation-{n}`):

- `incident.acknowledged` -> acknowledged in Vigil (its escalation stops), by the PagerDuty user;
- `incident.resolved` -> resolved in Vigil (a halt is never lifted by this: that stays the two-person clear);
- `incident.escalated`, `incident.reassigned`, `incident.unacknowledged`, `incident.reopened` -> a note on the
  timeline.

Each event is applied once (its `event.id` is remembered for a week: PagerDuty retries deliveries). The request
carries no session: the signature is its authentication. Unsigned, badly signed or unknown events are refused
(401) and written to the access audit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from incidents.notifiers import ESCALATION_SEPARATOR
from incidents.service import IncidentService
from review.context import ReviewContext, context
from vigil_core import keys

__all__ = ["router", "verify_signature"]

router = APIRouter()
SEEN_TTL_S = 7 * 86400
# An event being applied holds its id this long: a concurrent delivery of it is answered 409 (PagerDuty retries it),
# and a process that died applying it frees the id for PagerDuty's next retry after this.
CLAIM_TTL_S = 60
_NOTED = {"incident.escalated": "escalated in PagerDuty", "incident.reassigned": "reassigned in PagerDuty",
          "incident.unacknowledged": "unacknowledged in PagerDuty", "incident.reopened": "reopened in PagerDuty"}


def verify_signature(body: bytes, header: str, secrets: list[str]) -> bool:
    """Whether one of the header's `v1=` signatures is the HMAC-SHA256 of `body` under one of `secrets`."""
    given = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, signature) for signature in given):
            return True
    return False


@router.post("/webhooks/pagerduty")
async def pagerduty_webhook(request: Request, ctx: ReviewContext = Depends(context)) -> JSONResponse:
    settings = ctx.settings
    configured = settings.pagerduty_webhook_secrets
    secrets = [s.strip() for s in configured.get_secret_value().split(",") if s.strip()] if configured else []
    body = await request.body()
    if not verify_signature(body, request.headers.get("x-pagerduty-signature", ""), secrets):  # none: nothing passes
        ctx.audit("pagerduty", "webhook.refused", request, why="signature")
        return JSONResponse({"error": "signature"}, status_code=401)
    try:
        event = json.loads(body)["event"]
        event_type, event_id = str(event["event_type"]), str(event["id"])
        data: dict[str, Any] = event.get("data") or {}
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "not a v3 webhook event"}, status_code=400)
    # The id is marked done only once its change is durable (issue 35: marked first, a change that failed was
    # answered "duplicate" on PagerDuty's retry, and the acknowledgement was lost while the P0 kept escalating).
    seen = f"{settings.redis_prefix}{keys.WEBHOOKS}pagerduty:{event_id}"
    if not ctx.redis.set(seen, "applying", nx=True, ex=CLAIM_TTL_S):
        if ctx.redis.get(seen) == b"applying":
            return JSONResponse({"status": "in progress"}, status_code=409)
        return JSONResponse({"status": "duplicate"})
    try:
        response = _apply(event, event_type, data, request, ctx)
    except BaseException:
        ctx.redis.delete(seen)  # not applied: PagerDuty's retry applies it
        raise
    ctx.redis.set(seen, "done", ex=SEEN_TTL_S)
    return response


def _apply(event: dict[str, Any], event_type: str, data: dict[str, Any], request: Request,
           ctx: ReviewContext) -> JSONResponse:
    """Apply one verified PagerDuty event to the Vigil incident its key names."""
    settings = ctx.settings
    key = str(data.get("incident_key") or "")
    dedup = key.split(ESCALATION_SEPARATOR, 1)[0]
    service = IncidentService(settings, ctx.redis, ctx.producer)
    incident_id = service.find_open(dedup) if dedup else None
    if incident_id is None:
        return JSONResponse({"status": "ignored", "reason": "no open Vigil incident with this key"})
    who = str((event.get("agent") or {}).get("summary") or "PagerDuty")
    by = f"{who} (PagerDuty)"
    link = str(data.get("html_url") or "")
    if event_type == "incident.acknowledged":
        incident = service.store.get(incident_id)
        if incident.state == "open":
            service.acknowledge(incident_id, by)
        outcome = "acknowledged"
    elif event_type == "incident.resolved":
        service.resolve(incident_id, by, f"resolved in PagerDuty {link}".strip())
        outcome = "resolved"
    elif event_type in _NOTED:
        service.note(incident_id, by, f"{_NOTED[event_type]} {link}".strip(), pagerduty_event=event_type)
        outcome = "noted"
    else:
        return JSONResponse({"status": "ignored", "reason": f"event type {event_type}"})
    ctx.audit(by, f"incident.{outcome}_from_pagerduty", request, incident_id=incident_id)
    return JSONResponse({"status": outcome, "incident_id": incident_id})
