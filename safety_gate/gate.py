"""The gate the AI service checks before every response.

`check()` answers from memory in about a microsecond: a background thread keeps the view fresh from
the `halt:changes` channel and a poll. The gate fails closed: a view older than `staleness_s`, a missing
record, an unreachable Redis or a stale scorer heartbeat all answer `allowed=False`.

Per conversation, `check(conversation_id=...)` also answers `handoff` for a conversation handed to a human
(safety_gate/handoff.py): the set of handed-off ids is kept in memory from the `handoff:changes` channel and
re-read whenever its change counter moved, so the check stays a set lookup.

Example:
    gate = Gate.from_url("redis://127.0.0.1:6379/0", staleness_s=5.0)
    decision = gate.check(conversation_id="conv-7")
    if decision.allowed:
        reply = generate(...)
    elif decision.handoff:
        reply = gate.handoff_message("en-US")   # and route the conversation to the human team
    else:
        reply = gate.fallback("en-US")
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from safety_gate.fallback import FallbackMessages
from safety_gate.halt import HALTED, RUNNING, HaltRecord
from safety_gate.handoff import handoff_channel, handoff_key, handoff_version_key
from safety_gate.heartbeat import heartbeat_key, owners_key, partitions_problem
from vigil_core import keys
from vigil_core.redis_client import connect

__all__ = ["Gate", "GateDecision", "OTHER_COMPONENTS"]

# Components whose heartbeat the gate also reads, for the public status (/v1/status); only the scorer's halts.
OTHER_COMPONENTS = ("evaluator", "review")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the AI service may do now; `allowed` False means serve the fallback."""

    allowed: bool
    reason: str
    incident_id: str = ""
    stale: bool = False
    version: int = 0
    handoff: bool = False  # this conversation is handed to a human: serve the handoff message

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the HTTP gate's body)."""
        return {
            "allowed": self.allowed, "reason": self.reason, "incident_id": self.incident_id,
            "stale": self.stale, "version": self.version, "handoff": self.handoff,
        }


_HANDOFF = GateDecision(False, "handoff: this conversation is with a human", handoff=True)


@dataclass(frozen=True, slots=True)
class _View:
    decision: GateDecision
    stale_decision: GateDecision
    at: float  # monotonic time the view was read from Redis
    record: HaltRecord | None
    liveness: str | None = "not read yet"  # None: the scorer is alive on every partition; else why not
    alive: frozenset[str] = frozenset()  # the other components beating (STATUS_COMPONENTS), for /v1/status


_NEVER = _View(
    decision=GateDecision(False, "gate has not read the halt record yet", stale=True),
    stale_decision=GateDecision(False, "gate has not read the halt record yet", stale=True),
    at=float("-inf"),
    record=None,
)


def _decoded(raw: Any) -> HaltRecord:
    """The halt record from a hash or a change message; an unreadable one (a malformed field written by hand
    or by a bug) reads as HALTED, never as an error that could stop the refresher."""
    try:
        return HaltRecord.from_redis(raw)
    except (ValueError, TypeError, AttributeError) as exc:
        log.error("halt record unreadable (%s): the gate answers halted until it is fixed", type(exc).__name__)
        return HaltRecord(state=HALTED, reason=f"halt record unreadable ({type(exc).__name__})", version=-1)


class Gate:
    """Fail-closed, in-memory view of the halt record; thread-safe, non-blocking `check()`."""

    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        *,
        prefix: str = "vigil:",
        staleness_s: float = 5.0,
        poll_s: float | None = None,
        require_heartbeat: bool = True,
        heartbeat_component: str = "scorer",
        max_partition_lag: int | None = None,
        fallback: FallbackMessages | None = None,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        self._client_factory = client_factory
        self._halt_key = f"{prefix}{keys.HALT}"
        self._channel = f"{prefix}{keys.HALT_CHANGES}"
        self._handoff_key = handoff_key(prefix)
        self._handoff_version_key = handoff_version_key(prefix)
        self._handoff_channel = handoff_channel(prefix)
        # Conversation ids under handoff. Replaced whole on a full read, changed in place by a message: a set's
        # add/discard and a reference swap are each atomic under the GIL, so check() needs no lock.
        self._handoffs: set[str] = set()
        self._handoff_version = -1
        self._heartbeat_key = heartbeat_key(prefix, heartbeat_component)
        self._other_beats = {name: heartbeat_key(prefix, name) for name in OTHER_COMPONENTS}
        self._owners_key = owners_key(prefix, heartbeat_component)
        self._max_partition_lag = max_partition_lag
        self.staleness_s = staleness_s
        # Poll well inside the staleness bound so a healthy gate never goes stale between polls.
        self._poll_s = poll_s if poll_s is not None else max(0.05, staleness_s / 4)
        self._require_heartbeat = require_heartbeat
        self._fallback = fallback or FallbackMessages()
        self._clock = clock
        self._view = _NEVER
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self.allowed_count = 0
        self.denied_count = 0
        self.handoff_count = 0  # decisions that sent a conversation to its human (not counted as halted)
        self.changes_seen = 0
        self.refresh_failures = 0
        if start:
            self.start()

    @classmethod
    def from_url(cls, redis_url: str, staleness_s: float = 5.0, **kwargs: Any) -> Gate:
        """A started gate on `redis_url`; waits up to a second for the first reading."""
        timeout = min(1.0, staleness_s / 2)

        def factory() -> redis.Redis:
            return connect(redis_url, timeout_s=timeout)

        gate = cls(factory, staleness_s=staleness_s, **kwargs)
        gate.wait_ready(1.0)
        return gate

    # -- hot path ---------------------------------------------------------------------------------
    def check(self, conversation_id: str | None = None) -> GateDecision:
        """May the AI answer now (in this conversation)? Never touches Redis.

        A conversation handed to a human answers `handoff` in every state: allowed, halted, and stale (the
        conversations it last knew were handed off), because the handoff message routes that person to the human team
        and the fallback does not: never less safe than the fallback (issue 34). The rest get the halt record's
        answer, or halted when the view is stale."""
        if conversation_id is not None and conversation_id in self._handoffs:
            self.handoff_count += 1
            return _HANDOFF
        view = self._view
        if self._clock() - view.at > self.staleness_s:
            self.denied_count += 1
            return view.stale_decision
        decision = view.decision
        if decision.allowed:
            self.allowed_count += 1
        else:
            self.denied_count += 1
        return decision

    def fallback(self, locale: str = "en-US") -> str:
        """The clinician-approved crisis-resources message; works with Redis down."""
        return self._fallback.get(locale)

    def handoff_message(self, locale: str = "en-US") -> str:
        """What a person handed to a human sees: a person is joining, and the crisis resources meanwhile."""
        return self._fallback.handoff(locale)

    @property
    def handoffs(self) -> int:
        """How many conversations are under handoff in the current view."""
        return len(self._handoffs)

    # -- background refresh -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the refresher thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-gate", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the first reading arrived (or failed); True if one arrived."""
        return self._first.wait(timeout_s)

    def close(self) -> None:
        """Stop the refresher; `check()` then goes stale and answers not allowed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def view_age_s(self) -> float:
        """Seconds since the view was last read from Redis."""
        return self._clock() - self._view.at

    @property
    def refresher_alive(self) -> bool:
        """Whether the thread that keeps the view fresh is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def record(self) -> HaltRecord | None:
        """The last halt record read, if any."""
        return self._view.record

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            client: redis.Redis | None = None
            pubsub = None
            try:
                client = self._client_factory()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel, self._handoff_channel)
                self.refresh(client)
                backoff = 0.05
                next_poll = time.monotonic() + self._poll_s
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=max(0.0, next_poll - time.monotonic()))
                    if msg is not None and msg.get("type") == "message":
                        if msg.get("channel") == self._handoff_channel.encode():
                            self._on_handoff(client, msg["data"])
                        else:
                            self._on_change(client, msg["data"])
                    if time.monotonic() >= next_poll:
                        self.refresh(client)
                        next_poll = time.monotonic() + self._poll_s
            except Exception as exc:  # noqa: BLE001 - the refresher must outlive anything Redis can send it
                # The view is not refreshed, so it goes stale after staleness_s and the gate halts; the loop
                # goes on, so the gate resumes by itself once the record can be read again.
                self.refresh_failures += 1
                log.warning("gate cannot read the halt record: %s", type(exc).__name__)
                self._first.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._poll_s)
            finally:
                for closable in (pubsub, client):
                    if closable is not None:
                        with contextlib.suppress(Exception):  # best effort on a broken connection
                            closable.close()

    def _on_change(self, client: redis.Redis, data: bytes) -> None:
        try:
            change = json.loads(data)
        except ValueError:
            change = {}
        if isinstance(change, dict) and change.get("state") != RUNNING:
            # A halt applies at once from the message; a resume is re-read from the record itself, so
            # a forged or garbled message can only ever stop the AI, never start it.
            metrics = change.get("metrics") or "{}"
            record = _decoded({
                "state": str(change.get("state", "HALTED")), "reason": str(change.get("reason", "")),
                "incident_id": str(change.get("incident_id", "")), "since": str(change.get("since", "")),
                "by": str(change.get("by", "")), "version": str(change.get("version", 0)),
                "metrics": metrics if isinstance(metrics, str) else json.dumps(metrics),
            })
            self._install(record, self._view.liveness, at=self._clock(), alive=self._view.alive)
        else:
            self.refresh(client)

    def _on_handoff(self, client: redis.Redis, data: bytes) -> None:
        try:
            change = json.loads(data)
            op, cid, version = change["op"], str(change["conversation_id"]), int(change["version"])
        except (ValueError, KeyError, TypeError):
            self._read_handoffs(client)  # unreadable: read the whole set
            return
        if version != self._handoff_version + 1:
            self._read_handoffs(client)  # missed a change (or a reconnect): read the whole set
            return
        if op == "start":
            self._handoffs.add(cid)
        else:
            self._handoffs.discard(cid)
        self._handoff_version = version

    def _read_handoffs(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.get(self._handoff_version_key)
        pipe.hkeys(self._handoff_key)
        version, keys = pipe.execute()
        self._handoffs = {k.decode() for k in keys}
        self._handoff_version = int(version or 0)

    def refresh(self, client: redis.Redis) -> None:
        """Read the record, the heartbeat and the handoff counter from Redis and install the new view."""
        started = self._clock()
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(self._halt_key)
        pipe.exists(self._heartbeat_key)
        pipe.hgetall(self._owners_key)
        pipe.get(self._handoff_version_key)
        for key in self._other_beats.values():
            pipe.exists(key)
        raw, beats, owners, handoff_version, *others = pipe.execute()
        alive = frozenset(name for name, up in zip(self._other_beats, others, strict=True) if up)
        if int(handoff_version or 0) != self._handoff_version:
            self._read_handoffs(client)
        if not beats:
            liveness: str | None = "scorer heartbeat stale: crisis detection is not running"
        else:
            problem = partitions_problem(owners, time.time(), self._max_partition_lag)
            liveness = None if problem is None else f"crisis detection does not cover every conversation: {problem}"
        self._install(_decoded(raw), liveness, at=started, alive=alive)
        self._first.set()

    def status(self) -> dict[str, str]:
        """Each public component's state now: `operational`, `degraded` or `halted` (a status page's view: no
        reason, no internal detail). AI responses are halted whenever the gate would answer halted; crisis
        monitoring is halted without a live scorer on every partition and degraded without the evaluator (labels
        wait: detection goes on, its measurement does not); clinical review is degraded without the review app."""
        view = self._view
        stale = self._clock() - view.at > self.staleness_s
        ai = "halted" if stale or not view.decision.allowed else "operational"
        if stale:
            monitoring = "degraded"  # this gate cannot tell
        elif view.liveness is not None:
            monitoring = "halted"
        else:
            monitoring = "operational" if "evaluator" in view.alive else "degraded"
        review = "operational" if not stale and "review" in view.alive else "degraded"
        return {"ai_responses": ai, "crisis_monitoring": monitoring, "clinical_review": review}

    def _install(self, record: HaltRecord, liveness: str | None, at: float,
                 alive: frozenset[str] = frozenset()) -> None:
        previous = self._view.record
        if previous is not None and previous.version != record.version:
            self.changes_seen += 1
        if record.halted:
            decision = GateDecision(False, f"halted: {record.reason}", record.incident_id, False, record.version)
        elif self._require_heartbeat and liveness is not None:
            decision = GateDecision(False, liveness, "", False, record.version)
        else:
            decision = GateDecision(True, "running", "", False, record.version)
        stale = GateDecision(
            False, f"gate view older than {self.staleness_s:g} s: halt state unknown", record.incident_id, True,
            record.version,
        )
        self._view = _View(decision=decision, stale_decision=stale, at=at, record=record, liveness=liveness,
                           alive=alive)
