"""Conversation state in Redis, written so that applying the same events twice changes nothing.

`pred:{conversation_id}` (hash): max_score, flagged, first_flagged_turn, pi, review, closed, backup,
last_activity (conversation time), model_version, threshold, urgent_turn (set once), warning_sign_turn (set once:
a user turn holding a warning sign, models.backup.WarningSigns), `lang:{turn}` (each user
turn's language and its weight in the conversation's vote, "es 2.85"). `turns:{conversation_id}`
(hash): one field per turn and role, the turn as JSON, for the review request. `emb:{conversation_id}` (hash):
one field per scored user turn (its number), the turn's float16 embedding, the context of the conversation's
later turns. `active` (sorted set by last activity): conversations not yet closed, for the idle sweep. Every
update is a join (max, min, or, set-by-key), so a replay after a crash leaves the same state as a run without
one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from vigil_core import keys
from vigil_core.redis_client import store_errors

__all__ = ["ConversationStore", "ConversationState", "TurnUpdate", "conversation_language"]


def conversation_language(votes: dict[int, str]) -> str | None:
    """A conversation's language from its user turns' votes (turn -> "{language} {weight}", models.language): the
    language with the most weight, or None while no turn counts ("und", or weight 0). A function of the stored
    turns alone, so a replay reads the same language."""
    total: dict[str, float] = {}
    for vote in votes.values():
        language, _, weight = vote.partition(" ")
        try:
            w = float(weight)
        except ValueError:
            continue
        if w > 0 and language != "und":
            total[language] = total.get(language, 0.0) + w
    if not total:
        return None
    return max(sorted(total), key=lambda k: total[k])

_APPLY = """
local pred, turns, active = KEYS[1], KEYS[2], KEYS[3]
redis.call('HSETNX', pred, 'conversation_id', ARGV[1])
if ARGV[2] ~= '' then
  local old = tonumber(redis.call('HGET', pred, 'max_score') or '-1')
  if tonumber(ARGV[2]) > old then redis.call('HSET', pred, 'max_score', ARGV[2]) end
end
if tonumber(ARGV[3]) >= 0 then
  local oldf = tonumber(redis.call('HGET', pred, 'first_flagged_turn') or '-1')
  if oldf < 0 or tonumber(ARGV[3]) < oldf then redis.call('HSET', pred, 'first_flagged_turn', ARGV[3]) end
  redis.call('HSET', pred, 'flagged', 1, 'pi', 1)
end
if ARGV[5] == '1' then redis.call('HSET', pred, 'backup', 1) end
if ARGV[6] ~= '' then redis.call('HSET', pred, 'model_version', ARGV[6], 'threshold', ARGV[7]) end
if ARGV[9] ~= '' then redis.call('HSET', pred, 'review', ARGV[9]) end
local ts = tonumber(ARGV[4])
local old_ts = tonumber(redis.call('HGET', pred, 'last_activity') or '-1')
if ts > old_ts then
  redis.call('HSET', pred, 'last_activity', ARGV[4])
  if redis.call('HGET', pred, 'closed') == '1' then redis.call('HSET', pred, 'closed', 0) end
  redis.call('ZADD', active, ts, ARGV[1])
elseif redis.call('HGET', pred, 'closed') ~= '1' then
  redis.call('ZADD', active, 'GT', ts, ARGV[1])
end
for i = 10, #ARGV, 2 do redis.call('HSET', turns, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', pred, ARGV[8])
if #ARGV >= 10 then redis.call('EXPIRE', turns, ARGV[8]) end
return 1
"""

_CLOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) return 0 end
redis.call('HSET', KEYS[1], 'closed', 1, 'pi', ARGV[2], 'review', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


@dataclass
class TurnUpdate:
    """What one batch contributes to one conversation."""

    conversation_id: str
    max_score: float | None = None
    first_flagged_turn: int = -1
    last_activity: float = 0.0
    backup: bool = False
    model_version: str = ""
    threshold: float = 0.0
    review: str = ""
    urgent_turn: int = -1  # the first user turn at the urgent level in this batch, -1 none
    urgent_score: float = 0.0  # that turn's score
    urgent_why: str = ""  # "score" or "imminent phrase"
    warning_sign_turn: int = -1  # the first unflagged user turn holding a warning sign in this batch, -1 none
    turns: dict[str, dict[str, Any]] = field(default_factory=dict)
    embeddings: dict[int, bytes] = field(default_factory=dict)  # user turn -> float16 embedding bytes
    languages: dict[int, str] = field(default_factory=dict)  # user turn -> "{language} {weight}" (models.language)


@dataclass(frozen=True, slots=True)
class ConversationState:
    """A reading of `pred:{conversation_id}`."""

    conversation_id: str
    exists: bool
    max_score: float = 0.0
    flagged: bool = False
    first_flagged_turn: int | None = None
    pi: float | None = None
    review: str = ""
    closed: bool = False
    backup: bool = False
    last_activity: float = 0.0
    model_version: str = ""
    threshold: float = 0.0
    urgent_turn: int | None = None  # the first turn that made it urgent (issue 22), None: never urgent
    warning_sign_turn: int | None = None  # the first user turn recorded holding a warning sign, None: none
    languages: dict[int, str] = field(default_factory=dict)  # user turn -> "{language} {weight}" (`lang:{turn}`)

    @property
    def language(self) -> str | None:
        """The conversation's language (`conversation_language` of its turns' votes), None while undecided."""
        return conversation_language(self.languages)

    @classmethod
    def from_hash(cls, conversation_id: str, raw: dict[bytes, bytes]) -> ConversationState:
        """Decode HGETALL output."""
        if not raw:
            return cls(conversation_id, exists=False)
        d = {k.decode(): v.decode() for k, v in raw.items()}
        first = int(d.get("first_flagged_turn", "-1"))
        return cls(
            conversation_id=conversation_id, exists=True, max_score=float(d.get("max_score", "0")),
            flagged=d.get("flagged") == "1", first_flagged_turn=first if first >= 0 else None,
            pi=float(d["pi"]) if "pi" in d else None, review=d.get("review", ""), closed=d.get("closed") == "1",
            backup=d.get("backup") == "1", last_activity=float(d.get("last_activity", "0")),
            model_version=d.get("model_version", ""), threshold=float(d.get("threshold", "0")),
            urgent_turn=int(d["urgent_turn"]) if "urgent_turn" in d else None,
            warning_sign_turn=int(d["warning_sign_turn"]) if "warning_sign_turn" in d else None,
            languages={int(k[5:]): v for k, v in d.items() if k.startswith("lang:") and k[5:].isdigit()},
        )


class ConversationStore:
    """Reads and idempotent writes of conversation state."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: float) -> None:
        self._r = client
        self._prefix = prefix
        self._ttl = int(ttl_s)
        self.active_key = f"{prefix}{keys.ACTIVE}"
        self.sweep_lock_key = f"{prefix}{keys.SWEEP_LOCK}"
        self._apply = client.register_script(_APPLY)
        self._close = client.register_script(_CLOSE)

    def pred_key(self, conversation_id: str) -> str:
        """`{prefix}pred:{conversation_id}`."""
        return f"{self._prefix}{keys.PRED}{conversation_id}"

    def turns_key(self, conversation_id: str) -> str:
        """`{prefix}turns:{conversation_id}`."""
        return f"{self._prefix}{keys.TURNS}{conversation_id}"

    def embeddings_key(self, conversation_id: str) -> str:
        """`{prefix}emb:{conversation_id}`."""
        return f"{self._prefix}{keys.EMB}{conversation_id}"

    def embeddings(self, conversation_ids: list[str]) -> dict[str, dict[int, bytes]]:
        """The stored user-turn embeddings of several conversations (turn -> float16 bytes), one round trip."""
        raws = self._hgetall_many([self.embeddings_key(cid) for cid in conversation_ids], "turn embeddings")
        return {cid: {int(k): bytes(v) for k, v in raw.items()}
                for cid, raw in zip(conversation_ids, raws, strict=True)}

    def _hgetall_many(self, keys: list[str], what: str) -> list[dict[bytes, bytes]]:
        """HGETALL of several keys in one pipelined round trip."""
        if not keys:
            return []
        with store_errors(f"cannot read {what}"):
            pipe = self._r.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            return list(pipe.execute())

    def read_many(self, conversation_ids: list[str]) -> dict[str, ConversationState]:
        """States of several conversations in one round trip."""
        raws = self._hgetall_many([self.pred_key(cid) for cid in conversation_ids], "conversation state")
        return {cid: ConversationState.from_hash(cid, raw) for cid, raw in zip(conversation_ids, raws, strict=True)}

    def turns(self, conversation_id: str) -> list[dict[str, Any]]:
        """The stored turns of a conversation, in order."""
        with store_errors():
            raw = self._r.hgetall(self.turns_key(conversation_id))
        return [json.loads(raw[k]) for k in sorted(raw)]

    def apply(self, updates: list[TurnUpdate]) -> None:
        """Apply a batch's updates (idempotent), pipelined."""
        if not updates:
            return
        with store_errors("conversation state not written"):
            pipe = self._r.pipeline(transaction=False)
            for u in updates:
                args: list[Any] = [
                    u.conversation_id, "" if u.max_score is None else repr(float(u.max_score)), u.first_flagged_turn,
                    repr(float(u.last_activity)), "1" if u.backup else "0", u.model_version, repr(u.threshold),
                    self._ttl, u.review,
                ]
                for key, turn in sorted(u.turns.items()):
                    args += [key, json.dumps(turn, ensure_ascii=False, sort_keys=True)]
                self._apply(
                    keys=[self.pred_key(u.conversation_id), self.turns_key(u.conversation_id), self.active_key],
                    args=args, client=pipe,
                )
                if u.urgent_turn >= 0:  # the first urgent turn recorded stays (a replay changes nothing)
                    pipe.hsetnx(self.pred_key(u.conversation_id), "urgent_turn", u.urgent_turn)
                if u.warning_sign_turn >= 0:  # likewise: the first recorded stays
                    pipe.hsetnx(self.pred_key(u.conversation_id), "warning_sign_turn", u.warning_sign_turn)
                if u.languages:  # set by turn: a replay writes the same values
                    votes = {f"lang:{t}": v for t, v in u.languages.items()}
                    pipe.hset(self.pred_key(u.conversation_id), mapping=votes)
                if u.embeddings:
                    key = self.embeddings_key(u.conversation_id)
                    pipe.hset(key, mapping={str(t): e for t, e in u.embeddings.items()})
                    pipe.expire(key, self._ttl)
            pipe.execute()

    def close_many(self, decisions: list[tuple[str, float, str]]) -> None:
        """Mark conversations closed with their review decisions (conversation_id, pi, review) and take them
        out of the idle set, in one pipelined round trip; an unknown conversation only leaves the idle set."""
        if not decisions:
            return
        with store_errors("conversation close not written"):
            pipe = self._r.pipeline(transaction=False)
            for cid, pi, review in decisions:
                self._close(keys=[self.pred_key(cid), self.active_key], args=[cid, repr(pi), review], client=pipe)
            pipe.execute()

    def idle(self, before: float, limit: int = 500) -> list[str]:
        """Conversations whose last activity is older than `before` (epoch seconds)."""
        with store_errors():
            ids = self._r.zrangebyscore(self.active_key, "-inf", before, start=0, num=limit)
        return [i.decode() for i in ids]

    def win_sweep(self, instance: str, hold_s: float) -> bool:
        """True for exactly one instance per `hold_s`: the one that sweeps idle conversations."""
        with store_errors():
            return bool(self._r.set(self.sweep_lock_key, instance, nx=True, px=max(1, int(hold_s * 1000))))
