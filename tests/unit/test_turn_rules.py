"""The scorer's per-turn rules (pipeline/turn_rules.py), without Kafka or Redis (issue 36)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.turn_rules import (
    DEFAULT_URGENT_LEVEL,
    crisis_sign_turn,
    flag_reason,
    language_label,
    review_due,
    urgent_level,
    urgent_reason,
)
from vigil_core.conversations import ConversationState, TurnUpdate


def test_a_turn_is_urgent_by_its_score_first_and_looks_for_imminent_phrases_only_below_the_urgent_level():
    looked: list[bool] = []

    def phrase() -> bool:
        looked.append(True)
        return True

    assert urgent_reason(0.96, 0.95, phrase) == "score" and looked == []
    assert urgent_reason(0.10, 0.95, phrase) == "imminent phrase" and looked == [True]
    assert urgent_reason(0.10, 0.95, lambda: None) == ""


@pytest.mark.parametrize(("score", "urgent", "phrase", "multilingual", "expected"), [
    (0.50, "", None, None, True),           # at or above the threshold
    (0.01, "", None, None, False),          # below it, nothing else
    (0.01, "imminent phrase", None, None, True),  # urgent whatever its score
    (0.01, "", "me quiero morir", None, True),    # another language's crisis phrase
    (0.01, "", None, 0.70, True),           # the multilingual model at its threshold
    (0.01, "", None, 0.20, False),          # the multilingual model below it
])
def test_when_a_turn_is_flagged(score, urgent, phrase, multilingual, expected):
    assert bool(flag_reason(score, 0.03, urgent, phrase, multilingual, 0.5)) is expected
    # with no multilingual model loaded, its score (there is none) flags nothing
    without_model = bool(flag_reason(score, 0.03, urgent, phrase, multilingual, None))
    assert without_model is (score >= 0.03 or bool(urgent or phrase))


def test_an_explicit_phrase_flags_a_turn_whatever_its_score_and_is_looked_for_only_when_nothing_else_flags():
    looked: list[bool] = []

    def phrase(found: bool) -> Callable[[], bool]:
        def search() -> bool:
            looked.append(found)
            return found
        return search

    assert bool(flag_reason(0.01, 0.03, "", None, None, None, phrase(True))) is True  # the model's confident miss
    assert bool(flag_reason(0.01, 0.03, "", None, None, None, phrase(False))) is False
    assert looked == [True, False]
    assert bool(flag_reason(0.50, 0.03, "", None, None, None, phrase(True))) is True
    assert bool(flag_reason(0.01, 0.03, "imminent phrase", None, None, None, phrase(True))) is True
    assert looked == [True, False]  # already flagged: not looked for (the scorer counts phrase-only flags)


@pytest.mark.parametrize(("score", "urgent", "phrase", "multilingual", "strong", "expected"), [
    (0.50, "imminent phrase", "me quiero morir", 0.9, True, "score"),  # the model's own flag comes first
    (0.01, "imminent phrase", None, None, True, "imminent phrase"),
    (0.01, "", "me quiero morir", 0.9, True, "language phrase"),
    (0.01, "", None, 0.9, True, "multilingual model"),
    (0.01, "", None, 0.1, True, "strong phrase"),
    (0.01, "", None, None, False, ""),
])
def test_why_a_turn_is_flagged_is_shown_to_the_clinician(score, urgent, phrase, multilingual, strong, expected):
    assert flag_reason(score, 0.03, urgent, phrase, multilingual, 0.5, lambda: strong) == expected


def test_a_conversation_gets_one_review_request_when_first_flagged_and_one_when_first_urgent():
    new = ConversationState("c", exists=False)
    update = TurnUpdate("c")
    assert review_due(new, update) == (False, False)
    update.first_flagged_turn = 2
    assert review_due(new, update) == (False, True)
    update.urgent_turn = 2
    assert review_due(new, update) == (True, True)
    already = ConversationState("c", exists=True, flagged=True, review="flagged", urgent_turn=2)
    assert review_due(already, update) == (False, False)  # a replayed batch asks for nothing again


def test_the_ai_replies_are_read_from_the_first_crisis_sign_stored_or_in_the_batch():
    update = TurnUpdate("c")
    assert crisis_sign_turn(ConversationState("c", exists=False), update) is None
    update.first_flagged_turn = 6
    assert crisis_sign_turn(ConversationState("c", exists=False), update) == 6
    stored = ConversationState("c", exists=True, flagged=True, first_flagged_turn=2)
    assert crisis_sign_turn(stored, update) == 2 and crisis_sign_turn(stored, None) == 2


def test_metric_labels_name_a_few_languages_and_fold_the_rest():
    assert language_label("es") == "es" and language_label("sw") == "other"


class _Model:
    def __init__(self, meta: dict[str, object]) -> None:
        self.info = type("Info", (), {"extra": meta})()


def test_the_urgent_level_is_the_models_own_unless_configured():
    kinds = _Model({"threshold": 0.0188, "urgent_threshold": 0.70})
    assert urgent_level(None, kinds) == 0.70  # a promoted model brings its level
    assert urgent_level(None, _Model({"threshold": 0.03})) == DEFAULT_URGENT_LEVEL == 0.95  # a model naming none
    assert urgent_level(None, None) == DEFAULT_URGENT_LEVEL  # the backup scorer alone
    assert urgent_level(0.9, kinds) == 0.9  # VIGIL_URGENT_THRESHOLD holds for every model
