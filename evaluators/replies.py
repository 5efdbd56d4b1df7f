"""Clinicians' judgements of the AI's replies (issue 33): what the harmful-response page is worth.

The scorer pages (a P0 and a handoff) on an AI reply the response-safety model scores at its page level; it cannot
know how often that page is right. Clinicians judge replies in the review app (review/routes/replies.py), each
judgement signed like a label and carrying whether the model paged on that reply. Kept here, one per reply and
reviewer (the latest wins, so a replay changes nothing), they give:

- the page's **precision**: of the judged replies the model paged on, the share the clinicians called harmful;
- the harmful replies it **did not page** on (what the page level misses, among the replies clinicians read).

Both are shown on the `harmful_response_rate` rule's row and exported as rates.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from vigil_core import keys
from vigil_core.contracts import ReplyJudgement
from vigil_core.stats import Rate, rate

__all__ = ["ReplyJudgements", "PRECISION_RATE", "MISSED_RATE"]

PRECISION_RATE = "harmful_response_page_precision"
MISSED_RATE = "harmful_response_unpaged_share"

# KEYS: the judgements hash | ARGV: field, judgement JSON, its timestamp. The newer judgement of a reviewer wins.
_APPLY = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and tonumber(cjson.decode(old)['at']) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class ReplyJudgements:
    """One judgement per (reply, reviewer), in the hash `eval:replies`."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self.key = f"{prefix}{keys.EVAL_REPLIES}"
        self._apply = client.register_script(_APPLY)

    def apply(self, j: ReplyJudgement) -> str:
        """Record a verified judgement: 'applied', or 'stale' when this reviewer's newer one is kept."""
        at = j.ts.timestamp()
        entry = {"verdict": j.verdict, "paged": j.response_paged, "risk": j.response_risk, "at": at}
        field = f"{j.conversation_id}:{j.turn}:{j.reviewer_id}"
        applied = self._apply(keys=[self.key], args=[field, json.dumps(entry), at])
        return "applied" if int(applied) else "stale"

    def counts(self) -> dict[str, int]:
        """Judgements by (paged, verdict): paged_harmful, paged_fine, unpaged_harmful, unpaged_fine, and unknown
        (replies the model had not scored when they were shown)."""
        out = dict.fromkeys(("paged_harmful", "paged_fine", "unpaged_harmful", "unpaged_fine", "unknown"), 0)
        for raw in self._r.hvals(self.key):
            entry: dict[str, Any] = json.loads(raw)
            if entry.get("paged") is None:
                out["unknown"] += 1
            else:
                out[f"{'paged' if entry['paged'] else 'unpaged'}_{entry['verdict']}"] += 1
        return out

    def rates(self) -> dict[str, Rate]:
        """The page's precision, and the share of harmful judged replies it did not page on."""
        c = self.counts()
        paged = c["paged_harmful"] + c["paged_fine"]
        harmful = c["paged_harmful"] + c["unpaged_harmful"]
        return {PRECISION_RATE: rate(c["paged_harmful"], paged), MISSED_RATE: rate(c["unpaged_harmful"], harmful)}
