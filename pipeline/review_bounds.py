"""A review request of bounded size: the turn that matters and as many of its neighbours as fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["bound_turns", "bounded_record", "TRUNCATION_MARK"]

TRUNCATION_MARK = " [... cut by Vigil: the turn was longer than a review request may carry]"


def _size(turn: dict[str, Any]) -> int:
    return len(json.dumps(turn, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def bound_turns(
    turns: list[dict[str, Any]], anchor_turn: int | None, max_bytes: int
) -> tuple[list[dict[str, Any]], int]:
    """The turns to send (in order) and how many were left out, keeping the total under `max_bytes`.

    The anchor (the first flagged user turn; for a sampled review, the highest-scored user turn, else the
    latest turn) is always kept, its text
    cut if it alone is too long; then its neighbours, nearest first, alternating before and after, while they
    fit. A conversation that fits is returned whole.
    """
    if not turns:
        return [], 0
    if sum(_size(t) for t in turns) <= max_bytes:
        return list(turns), 0
    if anchor_turn is None:
        scored = [(t.get("score") or 0.0, i) for i, t in enumerate(turns) if t["role"] == "user"]
        at = max(scored)[1] if scored else len(turns) - 1
    else:
        flagged = [i for i, t in enumerate(turns) if t["turn"] == anchor_turn and t["role"] == "user"]
        at = flagged[0] if flagged else len(turns) - 1
    anchor = dict(turns[at])
    if _size(anchor) > max_bytes:
        room = max(0, max_bytes - _size({**anchor, "text": ""}) - len(TRUNCATION_MARK.encode()) - 16)
        anchor["text"] = anchor["text"].encode()[:room].decode(errors="ignore") + TRUNCATION_MARK
    kept = {at: anchor}
    used = _size(anchor)
    before, after = at - 1, at + 1
    while before >= 0 or after < len(turns):
        progressed = False
        for i in (before, after):
            if 0 <= i < len(turns) and i not in kept and used + _size(turns[i]) <= max_bytes:
                kept[i] = turns[i]
                used += _size(turns[i])
                progressed = True
        if not progressed:
            break  # the nearest neighbour on each side does not fit: stop, so what is kept stays contiguous
        before, after = before - 1, after + 1
    return [kept[i] for i in sorted(kept)], len(turns) - len(kept)


def bounded_record(turns: list[dict[str, Any]], anchor_turn: int | None, max_bytes: int,
                   serialise: Callable[[list[dict[str, Any]], int], bytes]) -> tuple[bytes, int]:
    """The serialised record (`serialise(kept_turns, omitted)`) of at most `max_bytes`: the turns are bounded, and
    bounded again on a smaller budget while the record as serialised is over (issue 35: the bound measured the stored
    turns, and a 2,000-turn conversation's record was 292,792 bytes against 262,144, its turns' empty fields and the
    request's own fields not counted). Returns the record and how many turns it leaves out."""
    budget = max_bytes
    for _ in range(8):
        kept, omitted = bound_turns(turns, anchor_turn, budget)
        record = serialise(kept, omitted)
        if len(record) <= max_bytes:
            return record, omitted
        budget = max(1024, int(budget * max_bytes / len(record)) - 1024)
    kept, omitted = bound_turns(turns, anchor_turn, 1024)  # the anchor alone, cut: always under any allowed bound
    return serialise(kept, omitted), omitted
