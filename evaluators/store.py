"""The evaluator's state in Redis, shared by every evaluator process and rebuilt by replaying the topics.

- `eval:labels:{cid}` hash reviewer -> label JSON (a later label by the same reviewer replaces the
  earlier one; a duplicate `label_id` changes nothing); `eval:label_ids` set of applied label ids;
- `eval:labelled` sorted set cid -> conversation time, `eval:joined:{cid}` the prediction joined to it;
- `eval:unknown` hash cid -> label count, for labels whose conversation has no stored prediction yet;
- `eval:ops:{rule}` sorted sets of `event_id|value` by time, trimmed to the rule's window;
- `eval:rules` hash rule -> state, and the `alerts` stream of state transitions.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from evaluators.window import LabelledConversation
from vigil_core import keys
from vigil_core.contracts import ClinicianLabel
from vigil_core.conversations import ConversationStore
from vigil_core.redis_client import store_errors

__all__ = ["EvaluatorStore"]

# A label is marked seen (KEYS[2]) only after its join (`apply_label`): a join that fails leaves it unseen,
# so the replayed record stores and joins it again instead of being skipped as a duplicate.
_APPLY_LABEL = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then
  local prev = cjson.decode(old)
  if prev['ts'] > ARGV[4] then return 2 end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# The state change, its entry on the alerts stream and (when actions are wired) its pending action are one
# atomic step: a process that dies after it leaves the action pending for the next evaluation to run.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not cur and ARGV[2] == 'OK' then return 0 end  -- a rule starting out OK is no news
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'rule', ARGV[1], 'from', cur or '', 'to',
                      ARGV[2], 'alert', ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[3], id, ARGV[3]) end
return id
"""


class EvaluatorStore:
    """Idempotent label, join, operational-window and rule-state storage."""

    def __init__(self, client: redis.Redis, prefix: str, label_wait_s: float) -> None:
        self._r = client
        self._p = f"{prefix}{keys.EVAL}"
        self.alerts_key = f"{prefix}{keys.ALERTS}"
        self.conversations = ConversationStore(client, prefix, label_wait_s)
        self._apply_label = client.register_script(_APPLY_LABEL)
        self._transition = client.register_script(_TRANSITION)
        self.pending_key = self._k("actions", "pending")

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    # -- labels -------------------------------------------------------------------------------------
    def apply_label(self, label: ClinicianLabel) -> str:
        """Store a label; returns 'applied', 'duplicate', 'stale' (an older label of the same reviewer)
        or 'unknown' (applied, but no prediction to join yet)."""
        ts = label.ts.isoformat()
        with store_errors():
            code = int(self._apply_label(
                keys=[self._k("labels", label.conversation_id), self._k("label_ids")],
                args=[label.label_id, label.reviewer_id, json.dumps({**label.to_dict(), "ts": ts}), ts],
            ))
        if code == 0:
            return "duplicate"
        outcome = "stale" if code == 2 else "applied" if self.join(label.conversation_id) else "unknown"
        with store_errors():
            self._r.sadd(self._k("label_ids"), label.label_id)
        return outcome

    def join(self, conversation_id: str) -> bool:
        """Join the conversation's labels to its prediction; False (kept aside) when none is stored."""
        state = self.conversations.read_many([conversation_id])[conversation_id]
        with store_errors():
            if not state.exists:
                # kept aside, counted by its labels (not by join attempts), and joined when a prediction appears
                self._r.hset(self._k("unknown"), conversation_id, len(self.labels(conversation_id)))
                return False
            timely = False
            labels = self.labels(conversation_id)
            crisis_turns = [lab["first_crisis_turn"] for lab in labels.values()
                            if lab.get("first_crisis_turn") is not None]
            if state.first_flagged_turn is not None:
                if crisis_turns:
                    user_turns = sorted(t["turn"] for t in self.conversations.turns(conversation_id)
                                        if t["role"] == "user")
                    first = min(crisis_turns)
                    later = [t for t in user_turns if t > first]
                    # flagged no later than one user turn after the first crisis turn
                    timely = state.first_flagged_turn <= (later[0] if later else first)
                else:
                    timely = True
            joined = {
                "flagged": state.flagged, "pi": state.pi if state.pi is not None else (1.0 if state.flagged else None),
                "max_score": state.max_score, "first_flagged_turn": state.first_flagged_turn, "timely": timely,
                "conversation_time": state.last_activity, "language": state.language,
            }
            pipe = self._r.pipeline(transaction=True)
            pipe.set(self._k("joined", conversation_id), json.dumps(joined))
            pipe.zadd(self._k("labelled"), {conversation_id: state.last_activity})
            pipe.hdel(self._k("unknown"), conversation_id)
            pipe.pfadd(self._k("labelled_hll"), conversation_id)
            pipe.execute()
            return True

    def labels(self, conversation_id: str) -> dict[str, dict[str, Any]]:
        """Labels of a conversation by reviewer."""
        raw = self._r.hgetall(self._k("labels", conversation_id))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def unknown(self) -> dict[str, int]:
        """Conversations with labels but no prediction, and how many labels each."""
        return {k.decode(): int(v) for k, v in self._r.hgetall(self._k("unknown")).items()}

    def retry_unknown(self) -> int:
        """Join labels whose prediction has arrived since; returns how many joined."""
        return sum(self.join(cid) for cid in list(self.unknown()))

    def labelled(self, since: float) -> list[LabelledConversation]:
        """Joined labelled conversations with conversation time >= since."""
        with store_errors():
            ids = [i.decode() for i in self._r.zrangebyscore(self._k("labelled"), since, "+inf")]
            if not ids:
                return []
            pipe = self._r.pipeline(transaction=False)
            for cid in ids:
                pipe.get(self._k("joined", cid))
                pipe.hgetall(self._k("labels", cid))
                pipe.sismember(self._k("warning_sign_reviews"), cid)
            raw = pipe.execute()
        out = []
        for n, cid in enumerate(ids):
            joined, labels, sign = raw[3 * n], raw[3 * n + 1], raw[3 * n + 2]
            if not joined or not labels:
                continue
            j = json.loads(joined)
            decoded = {k.decode(): json.loads(v) for k, v in labels.items()}
            levels = {k: lab["level"] for k, lab in decoded.items()}
            decisions = sorted((lab["ts"], lab["level"]) for lab in decoded.values() if lab.get("adjudication"))
            pi = j["pi"] if j["pi"] is not None else 1.0
            out.append(LabelledConversation(cid, float(j["conversation_time"]), levels, bool(j["flagged"]),
                                            float(pi), bool(j["timely"]),
                                            adjudicated=decisions[-1][1] if decisions else None,
                                            language=j.get("language"), warning_sign_review=bool(sign)))
        return out

    def coverage_counts(self) -> tuple[int, int]:
        """(labelled conversations, review requests) so far, approximately (HyperLogLog)."""
        return int(self._r.pfcount(self._k("labelled_hll"))), int(self._r.pfcount(self._k("review_hll")))

    def note_review_requested(self, conversation_ids: list[str], warning_signs: list[str] | None = None) -> None:
        """Count review requests for label coverage, and keep which were sent by the warning-sign route (a set:
        a replayed request adds nothing)."""
        if conversation_ids:
            self._r.pfadd(self._k("review_hll"), *conversation_ids)
        if warning_signs:
            self._r.sadd(self._k("warning_sign_reviews"), *warning_signs)

    # -- operational windows ------------------------------------------------------------------------
    def add_ops(self, rule: str, items: list[tuple[str, float, float]], window: int) -> None:
        """Add (event_id, time, value) to a rule's window (idempotent per event) and trim it."""
        if not items:
            return
        key = self._k("ops", rule)
        with store_errors():
            pipe = self._r.pipeline(transaction=False)
            pipe.zadd(key, {f"{eid}|{value!r}": ts for eid, ts, value in items})
            pipe.zremrangebyrank(key, 0, -(window + 1))
            pipe.execute()

    def ops_values(self, rule: str) -> list[float]:
        """The values in a rule's window."""
        members = self._r.zrange(self._k("ops", rule), 0, -1)
        return [float(m.decode().rsplit("|", 1)[1]) for m in members]

    # -- history (for post-incident reports) --------------------------------------------------------
    def record_history(self, at: float, rates: dict[str, Any], states: dict[str, str]) -> None:
        """Append the evaluation to `eval:history` when it differs from the last one kept."""
        body = json.dumps({"rates": rates, "states": states}, sort_keys=True, default=str)
        key = self._k("history")
        last = self._r.lindex(key, -1)
        if last is not None and json.loads(last)["body"] == body:
            return
        pipe = self._r.pipeline(transaction=False)
        pipe.rpush(key, json.dumps({"at": at, "body": body}))
        pipe.ltrim(key, -5000, -1)
        pipe.execute()

    def history(self) -> list[dict[str, Any]]:
        """Kept evaluations, oldest first: {at, rates, states}."""
        out = []
        for raw in self._r.lrange(self._k("history"), 0, -1):
            entry = json.loads(raw)
            out.append({"at": entry["at"], **json.loads(entry["body"])})
        return out

    # -- rule states --------------------------------------------------------------------------------
    def transition(self, rule: str, state: str, alert: dict[str, Any], pending: bool = False) -> str | None:
        """Set a rule's state; the id of its entry on the alerts stream only for the process that changed it.

        With `pending`, the alert is also left as a pending action under that id until `action_done`.
        """
        with store_errors():
            result = self._transition(keys=[self._k("rules"), self.alerts_key, self.pending_key],
                                      args=[rule, state, json.dumps(alert, default=str), "1" if pending else "0"])
        if not result:
            return None
        return result.decode() if isinstance(result, bytes) else str(result)

    def pending_actions(self) -> dict[str, dict[str, Any]]:
        """Alerts whose actions have not completed, by id (oldest first)."""
        with store_errors():
            raw = self._r.hgetall(self.pending_key)
        return {k.decode(): json.loads(v) for k, v in sorted(raw.items())}

    def claim_action(self, action_id: str, owner: str, lease_s: float) -> bool:
        """Take the lease on running one pending action (one process at a time)."""
        with store_errors():
            return bool(self._r.set(self._k("actions", "lease", action_id), owner, nx=True,
                                    px=max(1, int(lease_s * 1000))))

    def release_action(self, action_id: str) -> None:
        """Give up the lease after a failed attempt, so the next evaluation retries at once."""
        with store_errors():
            self._r.delete(self._k("actions", "lease", action_id))

    def action_done(self, action_id: str) -> None:
        """The action completed: it is no longer pending."""
        with store_errors():
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(self.pending_key, action_id)
            pipe.delete(self._k("actions", "lease", action_id))
            pipe.execute()

    def states(self) -> dict[str, str]:
        """Current state of every rule."""
        return {k.decode(): v.decode() for k, v in self._r.hgetall(self._k("rules")).items()}

    def alerts(self, count: int = 1000) -> list[dict[str, Any]]:
        """Alert transitions, oldest first."""
        return [
            {"id": eid.decode(), **{k.decode(): v.decode() for k, v in f.items()}}
            for eid, f in self._r.xrange(self.alerts_key, count=count)
        ]
