"""A review request never outgrows what Kafka accepts, and never loses the flagged turn."""

from __future__ import annotations

import json

import pytest

from pipeline.review_bounds import TRUNCATION_MARK, bound_turns, bounded_record
from vigil_core.clock import utcnow
from vigil_core.contracts import ReviewRequest, ReviewTurn


def _turns(n: int, size: int) -> list[dict]:
    ts = utcnow().isoformat()
    return [{"turn": i // 2, "role": "user" if i % 2 == 0 else "assistant", "text": f"{i:03d}" + "x" * size, "ts": ts}
            for i in range(n)]


def _bytes(turns: list[dict]) -> int:
    return sum(len(json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode()) + 1 for t in turns)


def test_a_conversation_that_fits_is_sent_whole():
    turns = _turns(6, 100)
    assert bound_turns(turns, 1, 64 * 1024) == (turns, 0)


def test_a_long_conversation_keeps_the_flagged_turn_and_its_nearest_neighbours():
    turns = _turns(80, 30_000)  # 40 user turns of 30,000 characters, as in issue 19
    kept, omitted = bound_turns(turns, 20, 256 * 1024)
    assert _bytes(kept) <= 256 * 1024
    assert omitted == len(turns) - len(kept) > 0
    flagged = [t for t in kept if t["turn"] == 20 and t["role"] == "user"]
    assert flagged and flagged[0]["text"] == turns[40]["text"]  # the flagged turn itself, uncut
    positions = [turns.index(t) for t in kept]
    assert positions == list(range(positions[0], positions[-1] + 1))  # one contiguous stretch around it
    assert positions[0] < 40 < positions[-1]


def test_a_flagged_turn_too_long_for_a_request_is_cut_and_says_so():
    turns = _turns(3, 20_000)
    kept, omitted = bound_turns(turns, 1, 8 * 1024)
    assert len(kept) == 1 and omitted == 2
    assert kept[0]["turn"] == 1 and kept[0]["text"].endswith(TRUNCATION_MARK)
    assert _bytes(kept) <= 8 * 1024


def test_a_sampled_review_keeps_the_highest_scored_turn_or_else_the_latest():
    turns = _turns(40, 20_000)
    kept, _ = bound_turns(turns, None, 100 * 1024)
    assert kept[-1] == turns[-1]
    turns[10]["score"] = 0.4  # a user turn (even index)
    kept, _ = bound_turns(turns, None, 100 * 1024)
    assert turns[10] in kept and turns[-1] not in kept


def test_the_bounded_request_is_a_valid_contract_with_its_omitted_count():
    turns = _turns(80, 30_000)
    kept, omitted = bound_turns(turns, 20, 256 * 1024)
    request = ReviewRequest(review_id="c:flagged", conversation_id="c", reason="flagged", pi=1.0, max_score=0.9,
                            first_flagged_turn=20, turns=[ReviewTurn(**t) for t in kept], requested_at=utcnow(),
                            omitted_turns=omitted)
    assert len(request.to_bytes()) < 300 * 1024  # far under Kafka's 1 MiB record limit
    assert json.loads(request.to_bytes())["omitted_turns"] == omitted



@pytest.mark.attack
def test_the_serialised_request_not_only_its_stored_turns_stays_under_the_bound():
    """Issue 35 (defect 7): 2,000 short turns gave a 292,792-byte request against a 262,144-byte bound."""
    now = utcnow()
    turns = [{"turn": i, "role": "user" if i % 2 == 0 else "assistant", "text": f"turn {i} é", "ts": now.isoformat()}
             for i in range(20_000)]
    for limit in (4096, 64 * 1024, 256 * 1024, 768 * 1024):
        def serialise(kept: list[dict], omitted: int) -> bytes:
            return ReviewRequest(review_id="c:flagged", conversation_id="c", reason="flagged", pi=1.0, max_score=0.9,
                                 first_flagged_turn=1000, turns=[ReviewTurn(**t) for t in kept], requested_at=now,
                                 omitted_turns=omitted).to_bytes()

        record, omitted = bounded_record(turns, 1000, limit, serialise)
        decoded = json.loads(record)
        assert len(record) <= limit and decoded["omitted_turns"] == omitted > 0
        assert 1000 in {t["turn"] for t in decoded["turns"]}  # the flagged turn is kept


def test_a_request_sent_for_a_warning_sign_is_bounded_around_that_turn():
    """`Closing._review` with an anchor (the turn whose warning sign sent it to review) keeps that turn, where the
    highest-scored user turn would be kept without one."""
    from pipeline.closing import Closing
    from pipeline.metrics import ScorerMetrics
    from vigil_core.settings import Settings

    closing = object.__new__(Closing)
    closing.settings, closing.metrics = Settings(review_max_bytes=4096), ScorerMetrics()
    turns = [{**t, "score": 0.5 if t["turn"] == 30 else 0.001} for t in _turns(80, 200) if t["role"] == "user"]

    def kept(anchor):
        request = ReviewRequest.model_validate_json(
            closing._review("c", "warning_sign", 1.0, 0.5, None, turns, None, anchor).value)
        return {t.turn for t in request.turns}, request.first_flagged_turn

    with_anchor, first = kept(2)
    assert 2 in with_anchor and 30 not in with_anchor and first is None  # the sign's turn, not flagged
    assert 30 in kept(None)[0] and 2 not in kept(None)[0]
