"""The regression table of chat (tests/data/chat_regression.csv): turns and conversations on the side of the
threshold they must fall on, scored by the shipped model as the scorer scores them (each user turn with its
conversation's earlier user turns as context).

Greetings, acknowledgements, questions to the AI, everyday stress, therapy talk and idioms of killing and dying
must pass; crises said plainly, indirectly, misspelled and across several turns must be flagged. None of these
sentences is in the chat-form training data (tests/unit/test_chat_form_data.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from models.artifact import DEFAULT_MODEL_DIR
from models.classifier import CrisisClassifier

pytestmark = pytest.mark.slow

TABLE = Path(__file__).resolve().parents[1] / "data" / "chat_regression.csv"
ROWS = list(csv.DictReader(TABLE.open(newline="", encoding="utf-8")))
# Rows the shipped model gets wrong, listed with it (vigil_model.json `known_regression_failures`): strict xfails, so
# a model that fixes one fails here until its list is updated, and a new failure is never silent.
KNOWN = set(json.loads((DEFAULT_MODEL_DIR / "vigil_model.json").read_text()).get("known_regression_failures", []))


def _turns(row: dict[str, str]) -> list[str]:
    return [t.strip() for t in row["text"].split("|")]


@pytest.fixture(scope="module")
def clf(model_cache):
    return CrisisClassifier.load(DEFAULT_MODEL_DIR, cache_dir=model_cache)


def conversation_flagged(clf: CrisisClassifier, turns: list[str]) -> tuple[bool, list[float]]:
    """Score a conversation turn by turn, each turn's history the embeddings of the turns before (the scorer's way)."""
    history: list = []
    scores = []
    for text in turns:
        scored = clf.score_turns([text], [history])
        scores.append(float(scored.scores[0]))
        if scored.embeddings is not None:
            history = [*history, scored.embeddings[0]]
    return any(s >= clf.threshold for s in scores), scores


def test_the_shipped_model_gets_nine_in_ten_of_the_table_right():
    assert len(KNOWN) <= 0.10 * len(ROWS) and {r["id"] for r in ROWS} >= KNOWN


def test_the_table_is_big_enough_and_balanced():
    kinds = {(r["kind"], r["expect"]) for r in ROWS}
    assert kinds == {("turn", "pass"), ("turn", "flag"), ("conversation", "pass"), ("conversation", "flag")}
    assert sum(r["kind"] == "turn" for r in ROWS) >= 150
    assert sum(r["kind"] == "conversation" for r in ROWS) >= 40
    assert all(len(_turns(r)) >= 2 for r in ROWS if r["kind"] == "conversation")


@pytest.mark.parametrize("row", [
    pytest.param(r, marks=pytest.mark.xfail(strict=True, reason="known failure of the shipped model (issue 17)"))
    if r["id"] in KNOWN else r for r in ROWS
], ids=lambda r: f"{r['id']}-{r['expect']}-{r['category']}")
def test_chat_falls_on_its_side_of_the_threshold(clf, row):
    flagged, scores = conversation_flagged(clf, _turns(row))
    want = row["expect"] == "flag"
    assert flagged == want, f"{row['text']!r}: scores {[round(s, 4) for s in scores]} vs threshold {clf.threshold:.4f}"


def test_a_content_free_turn_does_not_flag_a_conversation(clf):
    for text in ("hi", "hello", "ok", "thanks", "how are you?", "lol", "yes", "bye"):
        flagged, scores = conversation_flagged(clf, [text])
        assert not flagged, (text, scores)
        flagged, scores = conversation_flagged(clf, ["hey", "my sister is visiting this weekend", text])
        assert not flagged, (text, scores)


def test_a_crisis_built_over_turns_is_caught_at_its_last_turn(clf):
    turns = ["I'm so tired", "of everything", "I've been saving up my pills"]
    flagged, scores = conversation_flagged(clf, turns)
    assert flagged and scores[-1] >= clf.threshold
