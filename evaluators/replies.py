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

import redis

from vigil_core import keys
from vigil_core.contracts import ReplyJudgement
from vigil_core.stats import Rate, rate

__all__ = ["ReplyJudgements", "PRECISION_RATE", "MISSED_RATE", "CATEGORIES"]

PRECISION_RATE = "harmful_response_page_precision"
MISSED_RATE = "harmful_response_unpaged_share"

# Judgements by category (paged_harmful, paged_fine, unpaged_harmful, unpaged_fine, unknown) are kept beside the
# judgements (`eval:replies:counts`), moved in the same script that writes one, so that the evaluator reads five
# numbers each cycle instead of every judgement ever made. A hash of judgements without its counts (written before
# the counts were kept) has them counted once, in the first script that needs them.
_CATEGORY = """
local function category(raw)
  local e = cjson.decode(raw)
  if e['paged'] == nil or e['paged'] == cjson.null then return 'unknown' end
  return (e['paged'] and 'paged_' or 'unpaged_') .. e['verdict']
end
local function ensure_counts()
  if redis.call('EXISTS', KEYS[2]) == 1 then return end
  redis.call('HSET', KEYS[2], 'unknown', 0)
  for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do redis.call('HINCRBY', KEYS[2], category(raw), 1) end
end
"""
# KEYS: the judgements hash, its counts | ARGV: field, judgement JSON, its timestamp. The newer judgement of a
# reviewer wins; the counts move with it.
_APPLY = _CATEGORY + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and tonumber(cjson.decode(old)['at']) >= tonumber(ARGV[3]) then return 0 end
ensure_counts()
if old then redis.call('HINCRBY', KEYS[2], category(old), -1) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], category(ARGV[2]), 1)
return 1
"""
# KEYS: the judgements hash, its counts. The counts (counted once from the judgements where they are not kept).
_COUNTS = _CATEGORY + """
ensure_counts()
return redis.call('HGETALL', KEYS[2])
"""
CATEGORIES = ("paged_harmful", "paged_fine", "unpaged_harmful", "unpaged_fine", "unknown")


class ReplyJudgements:
    """One judgement per (reply, reviewer), in the hash `eval:replies`, and their counts by category beside it."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self.key = f"{prefix}{keys.EVAL_REPLIES}"
        self.counts_key = f"{prefix}{keys.EVAL_REPLY_COUNTS}"
        self._apply = client.register_script(_APPLY)
        self._counts = client.register_script(_COUNTS)

    def apply(self, j: ReplyJudgement) -> str:
        """Record a verified judgement: 'applied', or 'stale' when this reviewer's newer one is kept."""
        at = j.ts.timestamp()
        entry = {"verdict": j.verdict, "paged": j.response_paged, "risk": j.response_risk, "at": at}
        field = f"{j.conversation_id}:{j.turn}:{j.reviewer_id}"
        applied = self._apply(keys=[self.key, self.counts_key], args=[field, json.dumps(entry), at])
        return "applied" if int(applied) else "stale"

    def counts(self) -> dict[str, int]:
        """Judgements by (paged, verdict): paged_harmful, paged_fine, unpaged_harmful, unpaged_fine, and unknown
        (replies the model had not scored when they were shown)."""
        flat = self._counts(keys=[self.key, self.counts_key])
        kept = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
        return {c: kept.get(c, 0) for c in CATEGORIES}

    def rates(self) -> dict[str, Rate]:
        """The page's precision, and the share of harmful judged replies it did not page on."""
        c = self.counts()
        paged = c["paged_harmful"] + c["paged_fine"]
        harmful = c["paged_harmful"] + c["unpaged_harmful"]
        return {PRECISION_RATE: rate(c["paged_harmful"], paged), MISSED_RATE: rate(c["unpaged_harmful"], harmful)}
