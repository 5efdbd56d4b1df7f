"""Every language a person writes in (issue 32): turn and conversation languages, the other languages' crisis
phrases, the `language` review route and crisis recall per language group (pure logic; the scorer end to end is
tests/integration/test_languages.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from evaluators.rules import State, Thresholds, classify_languages
from evaluators.window import OTHER_LANGUAGES, LabelledConversation, language_recall
from models.backup import BackupScorer, ImminentPhrases, LanguageLexicons
from models.language import UNKNOWN, LanguageIdentifier
from pipeline.sampling import SamplingPolicy, uniform_from_id
from vigil_core.conversations import conversation_language

TURNS = Path(__file__).resolve().parents[2] / "data" / "languages" / "turns.csv"
ROWS = list(csv.DictReader(TURNS.open(encoding="utf-8")))


def test_turns_of_five_words_or_more_are_read_in_their_language_and_english_as_english():
    lid = LanguageIdentifier()
    long = [r for r in ROWS if len(r["text"].split()) >= 5]
    got = lid.identify([r["text"] for r in long])
    right = sum(g.language == r["language"] for g, r in zip(got, long, strict=True))
    assert right / len(long) >= 0.9
    assert all(g.language not in ("en", UNKNOWN) for g in got)  # never read as English, never undecided
    english = lid.identify(["can you help me plan my week please", "I have been feeling really low lately"])
    assert [g.language for g in english] == ["en", "en"] and all(g.weight > 0 for g in english)


def test_a_one_word_turn_does_not_count_in_its_conversations_language():
    hola, = LanguageIdentifier().identify(["hola"])
    assert hola.weight == 0


def test_a_conversations_language_is_the_language_of_most_of_its_words_whatever_the_order():
    votes = {0: "en 1.9", 1: "es 4.2", 2: "es 3.0", 3: "und 0.0"}
    assert conversation_language(votes) == "es"
    assert conversation_language(dict(reversed(list(votes.items())))) == "es"
    assert conversation_language({0: "und 0.0", 1: "es 0.0"}) is None
    assert conversation_language({0: "en 2.0", 1: "fr 2.0"}) == "en"  # a tie goes to the first in order: stable
    assert conversation_language({0: "garbage"}) is None


@pytest.mark.parametrize("row", [r for r in ROWS if r["label"] == "crisis"], ids=lambda r: r["text"][:40])
def test_every_crisis_turn_of_the_language_test_set_holds_a_phrase_of_its_language(row):
    # (which language's phrase is found first does not matter: "suicidio" is Spanish and, unaccented, Portuguese)
    assert LanguageLexicons().find(row["text"], ("imminent", "strong", "medium")) is not None
    assert BackupScorer(0.03).predict([row["text"]])[0] >= 0.9  # the backup scorer's hours flag it too


def test_ordinary_turns_and_idioms_of_killing_hold_no_strong_phrase():
    lex = LanguageLexicons()
    for row in (r for r in ROWS if r["label"] == "no_crisis"):
        assert lex.find(row["text"]) is None, row["text"]
    for text in ("me corto el pelo mañana", "ele vai me matar se eu chegar tarde", "je me coupe les cheveux"):
        assert lex.find(text, ("imminent", "strong", "medium")) is None, text


def test_phrases_match_without_accents_and_imminent_ones_in_any_supported_language():
    lex = LanguageLexicons()
    assert lex.find("nao quero mais viver") == "pt" and lex.find("NO QUIERO VIVIR MÁS") == "es"
    imminent = ImminentPhrases()
    for text in ("hoy me voy a matar", "tomei todos os comprimidos", "je suis sur le pont", "ich bin auf dem dach"):
        assert imminent.search(text), text


def test_a_conversation_in_an_unvalidated_language_is_reviewed_at_least_at_pi_language():
    policy = SamplingPolicy(threshold=0.03, pi_floor=0.002, pi_language=0.25)
    decisions = [policy.decide(f"c{k}", 0.0001, False, unvalidated_language=True) for k in range(2000)]
    assert all(d.pi == 0.25 and d.reason == "language" for d in decisions)
    assert [d.selected for d in decisions] == [uniform_from_id(f"c{k}") < 0.25 for k in range(2000)]
    assert 0.22 < sum(d.selected for d in decisions) / 2000 < 0.28
    english = policy.decide("c1", 0.0001, False)
    assert english.reason == "sampled" and english.pi == 0.002
    flagged = policy.decide("c1", 0.9, True, unvalidated_language=True)
    assert flagged.reason == "flagged" and flagged.pi == 1.0 and flagged.selected


def _labelled(cid: str, language: str | None, flagged: bool, pi: float = 1.0) -> LabelledConversation:
    return LabelledConversation(cid, 0.0, {"r1": "high"}, flagged, pi, language=language)


def test_recall_by_language_group_pools_the_languages_with_too_few_labels():
    items = ([_labelled(f"en{k}", "en", k % 20 != 0) for k in range(100)]
             + [_labelled(f"es{k}", "es", k % 4 != 0) for k in range(40)]
             + [_labelled(f"fr{k}", "fr", True) for k in range(3)] + [_labelled("x", None, False)])
    groups = language_recall(items, ["en"], 30)
    assert set(groups) == {"en", "es", OTHER_LANGUAGES}
    assert groups["en"].value == pytest.approx(0.95) and groups["es"].value == pytest.approx(0.75)
    assert groups[OTHER_LANGUAGES].n == pytest.approx(4) and groups[OTHER_LANGUAGES].value == pytest.approx(0.75)
    rule = Thresholds.load()["language_recall"]
    state, which = classify_languages(groups, rule)
    assert state == State.WARNING and which == ["es"]  # es is measured and below the line
    state, which = classify_languages(language_recall(items[:100] + items[140:], ["en"], 30), rule)
    assert state == State.INSUFFICIENT_DATA and which == [OTHER_LANGUAGES]  # labels, too few to measure
    assert classify_languages(language_recall(items[:100], ["en"], 30), rule) == (State.OK, [])
