"""Every Redis key Vigil uses, in one table: the names under the prefix (`VIGIL_REDIS_PREFIX`, `vigil:`), what each
holds, and which role writes and which reads it.

Every store builds its keys from the names here (`prefix + HALT`, `prefix + REVIEW + "queue"`); the ACL generator
(`vigil redis acl`) grants each role what `FAMILIES` says it writes and reads and nothing else; the test of
docs/contracts.md checks that its table of keys names exactly these families. A key outside them is a key no role
may touch under the ACLs: add it here first.

Standard library only: the gate imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Family", "FAMILIES", "family_of", "grants"]

# -- the names, under the prefix (a name ending in ":" starts a family of keys) --------------------------------------
HALT = "halt"
HALT_VERSION = "halt:version"
HALT_APPROVALS = "halt:approvals:"
HALT_CHANGES = "halt:changes"  # channel
AUDIT = "audit"  # stream: the halt's and the live model's change history
AUDIT_ACCESS = "audit:access"
HEARTBEAT = "heartbeat:"
HEARTBEAT_REVIEW = "heartbeat:review"
HANDOFF = "handoff"
HANDOFF_VERSION = "handoff:version"
HANDOFF_AUDIT = "handoff:audit"
HANDOFF_CHANGES = "handoff:changes"  # channel
PRED = "pred:"
TURNS = "turns:"
EMB = "emb:"
ACTIVE = "active"
SWEEP_LOCK = "sweep:lock"
EVAL = "eval:"
EVAL_REPLIES = "eval:replies"
EVAL_REPLY_COUNTS = "eval:replies:counts"  # the judgements by category, moved with each (evaluators/replies.py)
HARMFUL_RATE = "eval:ops:harmful_response_rate"  # the scorer's share of the harmful-reply rule
ALERTS = "alerts"
INCIDENT = "incident:"
INCIDENTS = "incidents:"
NOTIFY = "notify:"
USERS = "users:"
REVIEW = "review:"
WEBHOOKS = "webhooks:"
MODEL_LIVE = "model:live"
MODEL_CHANGES = "model:changes"  # channel
SHADOW = "shadow:"
CASES = "cases:"


@dataclass(frozen=True, slots=True)
class Family:
    """Keys (or a channel) under the prefix: `pattern` is a name, or a name followed by `*` for a family."""

    pattern: str
    what: str
    writers: tuple[str, ...]  # roles that write it (a channel: publish to it)
    readers: tuple[str, ...] = ()  # roles that only read it (a channel: subscribe)
    channel: bool = False


_HANDOFF_WRITERS = ("scorer", "evaluator", "review")  # start (scorer, evaluator), end (review app)

FAMILIES: tuple[Family, ...] = (
    Family(HALT, "the halt record: state (RUNNING or HALTED), reason, incident_id, since, by, metrics, version",
           ("evaluator", "review"), ("gate", "scorer")),
    Family(HALT_VERSION, "the halt's version counter (never repeats; outlives the record)", ("evaluator", "review")),
    Family(HALT_APPROVALS + "*", "approvals of a clear, per version", ("review",)),
    Family(HALT_CHANGES, "the halt's change announcements", ("evaluator", "review"), ("gate",), channel=True),
    Family(AUDIT, "the halt's and the live model's change history", ("evaluator", "review")),
    Family(AUDIT_ACCESS, "who saw and did what in the review app", ("review",)),
    Family(HEARTBEAT + "*", "liveness with a TTL per component and process; the live owner of each partition",
           ("scorer", "evaluator"), ("gate", "review")),
    Family(HEARTBEAT_REVIEW + "*", "the review app's own heartbeat", ("review",)),
    Family(HANDOFF, "conversations with a human", _HANDOFF_WRITERS, ("gate",)),
    Family(HANDOFF_VERSION, "the handoff set's version counter", _HANDOFF_WRITERS, ("gate",)),
    Family(HANDOFF_AUDIT, "every handoff started and ended", _HANDOFF_WRITERS),
    Family(HANDOFF_CHANGES, "handoff announcements", _HANDOFF_WRITERS, ("gate",), channel=True),
    Family(PRED + "*", "conversation state: max score, flagged, pi, review decision, each user turn's language vote",
           ("scorer",), ("evaluator", "review")),
    Family(TURNS + "*", "a conversation's turns", ("scorer",), ("evaluator", "review")),
    Family(EMB + "*", "float16 embeddings of a conversation's user turns", ("scorer",)),
    Family(ACTIVE, "open conversations by last activity", ("scorer",), ("evaluator", "review")),
    Family(SWEEP_LOCK, "the idle sweep's lock among scorers", ("scorer",)),
    Family(EVAL + "*", "labels, joins, rolling windows, rule states and their transitions, reply judgements",
           ("evaluator",), ("review",)),
    Family(HARMFUL_RATE, "the harmful-reply rule's rolling rate (the scorer counts replies)", ("scorer",)),
    Family(ALERTS, "the rule states' alert view", ("evaluator",), ("review",)),
    Family(INCIDENT + "*", "the incident view, one key each", ("scorer", "evaluator", "review")),
    Family(INCIDENTS + "*", "open and all incidents, seen events, dedup and escalation claims",
           ("scorer", "evaluator", "review")),
    Family(NOTIFY + "*", "the notification outbox: due, entries, sent", ("scorer", "evaluator", "review")),
    Family(USERS + "*", "review app accounts (the evaluator checks label signatures against them)", ("review",),
           ("evaluator",)),
    Family(REVIEW + "*", "the review queue, claims, sessions, login throttles, outcomes", ("review",)),
    Family(WEBHOOKS + "*", "PagerDuty webhook events applied (claimed while applying)", ("review",)),
    Family(MODEL_LIVE, "the champion, its history, the shadow candidate and its share", ("review",), ("scorer",)),
    Family(MODEL_CHANGES, "the live model's change announcements", ("review",), channel=True),
    Family(SHADOW + "*", "the shadow candidate's score of each user turn, its threshold, flagged, skipped",
           ("scorer",), ("review",)),
    Family(CASES + "*", "urgent cases: state, deadline, holder, outcome; open cases by deadline; times to contact; "
           "every change; breach claims", ("scorer", "review")),
)


def family_of(name: str) -> Family | None:
    """The family a key (under the prefix) belongs to, or None; a key within a family ending in `*` belongs to the
    most specific family that names it."""
    found = [f for f in FAMILIES if not f.channel and (
        name == f.pattern or (f.pattern.endswith("*") and name.startswith(f.pattern[:-1])))]
    return max(found, key=lambda f: len(f.pattern)) if found else None


def grants(role: str, prefix: str) -> tuple[str, str]:
    """A role's Redis ACL key and channel patterns: `~` what it writes, `%R~` what it only reads, `&` its channels."""
    keys: list[str] = []
    channels: list[str] = []
    for f in FAMILIES:
        if f.channel:
            if role in f.writers or role in f.readers:
                channels.append(f"&{prefix}{f.pattern}")
        elif role in f.writers:
            keys.append(f"~{prefix}{f.pattern}")
        elif role in f.readers:
            keys.append(f"%R~{prefix}{f.pattern}")
    return " ".join(keys), " ".join(channels)
