"""Which crisis model is live, which is in shadow, and the shadow's scores, in Redis.

- `model:live` (hash): `champion` (a version of the model store, or "default": the configured model), `history`
  (JSON list of earlier champions, newest last: what a rollback returns to), `shadow` (a candidate version or
  ""), `shadow_share` (the share of conversations it scores), `version` (a counter that every change raises),
  `since`, `by`, `reason`, `action`. Every change is one transaction that also appends to the `audit` stream and
  publishes the new record version on `model:changes`. Scorers read `version` once per batch cycle and switch
  between batches.
- `shadow:{conversation_id}` (hash, TTL = label wait): `{version}|{turn}` -> the candidate's score of that user
  turn, `{version}|threshold`, `{version}|flagged` when one of its turns would have flagged the conversation
  (its threshold, or a phrase of imminent risk, as the champion flags), and `{version}|skipped` when the candidate
  missed one of its turns (a scorer too busy to shadow): such a conversation is left out of comparisons, its
  candidate verdict being incomplete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from vigil_core import keys
from vigil_core.contracts import DEFAULT_MODEL_VERSION as DEFAULT_VERSION
from vigil_core.errors import VigilError
from vigil_core.redis_client import store_errors

__all__ = ["ModelRecord", "LiveModels", "ShadowStore", "ShadowReading", "ModelChangeRefused", "DEFAULT_VERSION"]

AUDIT_MAXLEN = 100_000


class ModelChangeRefused(VigilError):
    """The change does not apply to the record as it is (nothing to roll back to, a record changed meanwhile)."""


@dataclass(frozen=True, slots=True)
class LiveModels:
    """A reading of `model:live`."""

    champion: str = DEFAULT_VERSION
    history: list[str] = field(default_factory=list)
    shadow: str = ""
    shadow_share: float = 1.0
    version: int = 0
    since: str = ""
    by: str = ""
    reason: str = ""
    action: str = ""

    @property
    def previous(self) -> str | None:
        """The champion a rollback returns to, or None."""
        return self.history[-1] if self.history else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"champion": self.champion, "previous": self.previous, "history": self.history,
                "shadow": self.shadow or None, "shadow_share": self.shadow_share, "version": self.version,
                "since": self.since, "by": self.by, "reason": self.reason, "action": self.action}


class ModelRecord:
    """Reads and audited changes of the live-model record."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r: Any = client
        self.key = f"{prefix}{keys.MODEL_LIVE}"
        self.audit_key = f"{prefix}{keys.AUDIT}"
        self.channel = f"{prefix}{keys.MODEL_CHANGES}"

    def read(self) -> LiveModels:
        """The record (the configured model as champion, no shadow, version 0 when none was ever written)."""
        with store_errors():
            raw = self._r.hgetall(self.key)
        return self._decode(raw)

    def read_version(self) -> int:
        """Only the change counter: what a scorer reads every cycle."""
        with store_errors():
            raw = self._r.hget(self.key, "version")
        return int(raw) if raw else 0

    @staticmethod
    def _decode(raw: Any) -> LiveModels:
        if not raw:
            return LiveModels()
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return LiveModels(champion=d.get("champion") or DEFAULT_VERSION, history=json.loads(d.get("history", "[]")),
                          shadow=d.get("shadow", ""), shadow_share=float(d.get("shadow_share", "1")),
                          version=int(d.get("version", "0")), since=d.get("since", ""), by=d.get("by", ""),
                          reason=d.get("reason", ""), action=d.get("action", ""))

    def _change(self, action: str, by: str, reason: str, change: Any) -> LiveModels:
        """Apply `change(current) -> dict of new fields` in one WATCHed transaction with its audit entry."""
        with store_errors(), self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key)
                    current = self._decode(pipe.hgetall(self.key))
                    fields = change(current)
                    new = {"champion": current.champion, "history": json.dumps(current.history),
                           "shadow": current.shadow, "shadow_share": str(current.shadow_share), **fields,
                           "version": str(current.version + 1),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": by,
                           "reason": reason, "action": action}
                    pipe.multi()
                    pipe.hset(self.key, mapping=new)
                    pipe.xadd(self.audit_key, {"kind": "model", "action": action, "by": by, "reason": reason,
                                               "record": json.dumps(new)},
                              maxlen=AUDIT_MAXLEN, approximate=True)
                    pipe.publish(self.channel, new["version"])
                    pipe.execute()
                    return self._decode({k.encode(): v.encode() for k, v in new.items()})
                except redis.WatchError:
                    continue

    def promote(self, version: str, by: str, reason: str) -> LiveModels:
        """Make `version` the champion; the one it replaces is where a rollback returns. Its shadow ends."""
        def change(cur: LiveModels) -> dict[str, str]:
            if cur.champion == version:
                raise ModelChangeRefused(f"{version} is already the champion")
            return {"champion": version, "history": json.dumps([*cur.history, cur.champion][-50:]),
                    "shadow": "" if cur.shadow == version else cur.shadow}
        return self._change("promote", by, reason, change)

    def rollback(self, by: str, reason: str) -> LiveModels:
        """Return to the previous champion at once."""
        def change(cur: LiveModels) -> dict[str, str]:
            if not cur.history:
                raise ModelChangeRefused(f"no previous champion to roll back to (the champion is {cur.champion})")
            return {"champion": cur.history[-1], "history": json.dumps(cur.history[:-1])}
        return self._change("rollback", by, reason, change)

    def set_shadow(self, version: str, share: float, by: str, reason: str) -> LiveModels:
        """Score `version` in shadow on `share` of the conversations ("" ends the shadow)."""
        if not 0.0 < share <= 1.0:
            raise ModelChangeRefused(f"shadow share must be in (0, 1], not {share}")

        def change(cur: LiveModels) -> dict[str, str]:
            if version and version == cur.champion:
                raise ModelChangeRefused(f"{version} is the champion; a shadow is a candidate")
            return {"shadow": version, "shadow_share": str(share)}
        return self._change("shadow" if version else "shadow_end", by, reason, change)

    def changes(self, count: int = 50) -> list[dict[str, Any]]:
        """The newest model changes from the audit stream, oldest first."""
        with store_errors():
            entries = self._r.xrevrange(self.audit_key, count=count * 4)
        out = []
        for entry_id, raw in reversed(entries):
            d = {k.decode(): v.decode() for k, v in raw.items()}
            if d.get("kind") == "model":
                out.append({"id": entry_id.decode(), **{k: v for k, v in d.items() if k != "record"},
                            "record": json.loads(d.get("record", "{}"))})
        return out[-count:]


@dataclass(frozen=True, slots=True)
class ShadowReading:
    """The candidate's view of one conversation."""

    max_score: float | None
    threshold: float | None
    turns: int
    skipped: bool
    any_flagged: bool = False

    @property
    def flagged(self) -> bool | None:
        """Whether the candidate flagged it (None: it scored none of its turns)."""
        if self.max_score is None or self.threshold is None:
            return None
        return self.any_flagged or self.max_score >= self.threshold


class ShadowStore:
    """The shadow's per-turn scores: idempotent (a replayed turn writes the same field)."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: float) -> None:
        self._r = client
        self._prefix = prefix
        self._ttl = int(ttl_s)

    def key(self, conversation_id: str) -> str:
        """`{prefix}shadow:{conversation_id}`."""
        return f"{self._prefix}{keys.SHADOW}{conversation_id}"

    def write(self, version: str, threshold: float, scores: Iterable[tuple[str, int, float, bool]],
              skipped: Iterable[str] = ()) -> None:
        """Store (conversation_id, turn, score, flagged) of `version`; mark conversations whose turns it skipped."""
        with store_errors():
            pipe = self._r.pipeline(transaction=False)
            touched = set()
            for cid, turn, score, flagged in scores:
                fields: dict[Any, Any] = {f"{version}|{turn}": repr(float(score)),
                                                          f"{version}|threshold": repr(float(threshold))}
                if flagged:
                    fields[f"{version}|flagged"] = "1"
                pipe.hset(self.key(cid), mapping=fields)
                touched.add(cid)
            for cid in skipped:
                pipe.hset(self.key(cid), f"{version}|skipped", "1")
                touched.add(cid)
            for cid in touched:
                pipe.expire(self.key(cid), self._ttl)
            pipe.execute()

    def read_many(self, conversation_ids: list[str], version: str) -> dict[str, ShadowReading]:
        """The candidate's reading of each conversation."""
        with store_errors():
            pipe = self._r.pipeline(transaction=False)
            for cid in conversation_ids:
                pipe.hgetall(self.key(cid))
            raw = pipe.execute()
        out = {}
        prefix = f"{version}|"
        for cid, fields in zip(conversation_ids, raw, strict=True):
            scores, threshold, skipped, flagged = [], None, False, False
            for k, v in fields.items():
                name = k.decode()
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix):]
                if rest == "threshold":
                    threshold = float(v)
                elif rest == "skipped":
                    skipped = True
                elif rest == "flagged":
                    flagged = True
                else:
                    scores.append(float(v))
            out[cid] = ShadowReading(max(scores) if scores else None, threshold, len(scores), skipped, flagged)
        return out
