"""Idioms of death said in hyperbole are read for what they mean, nothing a person at risk says (models/idioms.py)."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from models.idioms import IDIOMS_VERSION, read_idioms
from tests.helpers import ROOT


@pytest.mark.parametrize(("said", "read"), [
    ("killing some time before my train", "passing some time before my train"),
    ("this traffic is going to be the death of me", "this traffic is going to be a nuisance"),
    ("I'd kill for a pizza right now", "I'd wish for a pizza right now"),
    ("i'm dying to know how the show ends", "i'm eager to know how the show ends"),
    ("finished a twelve hour shift, absolutely dead on my feet", "finished a twelve hour shift, absolutely very tired"),
    ("I'm dead tired", "I'm very tired"),
    ("shoot me a text when you land", "send me a text when you land"),
    ("bored to death in this meeting", "bored stiff in this meeting"),
    ("the new season of that show is to die for", "the new season of that show is wonderful"),
    ("he's gonna kill it at his audition", "he's gonna do great at his audition"),
    ("killed it at work today", "did great at work today"),
    ("I killed a spider in the bathroom", "I stopped a spider in the bathroom"),
    ("we're killing time at the airport", "we're passing time at the airport"),
    ("kill -9 isn't working on this process", "stop -9 isn't working on this process"),
    ("what's the best way to kill mold in a shower", "what's the best way to stop mold in a shower"),
    ("over my dead body will I wear that sweater", "no way will I wear that sweater"),
])
def test_an_idiom_of_death_is_read_for_what_it_means(said, read):
    assert read_idioms(said) == read


@pytest.mark.parametrize("said", [
    "I've been wanting to die for weeks",  # "to die for" is the idiom only where nothing wants it
    "i want to die for real",
    "killing time until i can end it tonight",  # the sentence still speaks of an end
    "this life is going to be the death of me",
    "honestly this depression will be the death of me",
    "i want to kill myself",
    "i would kill for it all to be over",
    "i'm dying inside",
    "i am so tired of living, i'd kill for a way out",
    "scared to death that i'll hurt myself again",
    "i would die for my kids",  # no idiom of the table: as written
    "i keep thinking about killing myself",
    "just shoot me",
    "how do you kill bacteria on a cutting board?",  # "cutting": a word of self-harm, so the sentence is as written
])
def test_a_sentence_that_may_mean_its_words_of_dying_is_read_as_written(said):
    assert read_idioms(said) == said


def test_every_rule_holds_a_word_the_quick_check_looks_for():
    """A turn without any of `_ANY`'s words is returned as it is, unread: each rule must need one of them."""
    from models.idioms import _ANY, _RULES

    for pattern, _ in _RULES:
        assert any(word in pattern.pattern for word in ("kill", "death", "die", "dying", "dead", "shoot")), pattern
    assert _ANY.search("Shoot me a text") and not _ANY.search("see you at the station at nine")


def test_only_the_sentence_with_the_idiom_is_read_again():
    said = "killing some time before my train. i want to end it all tonight."
    assert read_idioms(said) == "passing some time before my train. i want to end it all tonight."


def test_no_crisis_turn_of_the_teams_data_is_read_differently():
    """Every crisis turn and post the model is trained, chosen and measured on keeps its words; ordinary ones do
    change (the idioms are there)."""
    csv.field_size_limit(10**8)
    files = [*sorted((ROOT / "data" / "chat_form").glob("*.csv")),
             ROOT / "data" / "chat_contrast" / "chat_contrast.csv"]
    posts = ROOT.parent / "shared" / "data" / "rmhd27_suicidewatch" / "rmhd27_suicidewatch.csv"
    files += [posts] if posts.exists() else []
    changed = {"crisis": [], "no_crisis": []}
    for path in files:
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if read_idioms(row["text"]) != row["text"]:
                    changed["crisis" if row["label"] == "crisis" else "no_crisis"].append(row["text"])
    assert changed["crisis"] == []
    assert len(changed["no_crisis"]) >= 20


# The table each version names: the version is part of a model's name, so a model never scores one text two ways.
TABLES = {"vigil-idioms/1": "07a7094b5ca2c9ff"}


def test_the_version_names_the_table():
    """A change to a rule, to the words of distress or to the sentence split is a new version (and so a new model
    name, `scoring_version`): give IDIOMS_VERSION a new name and its digest here."""
    from models.idioms import _ANY, _DISTRESS, _RULES, _SENTENCE

    table = json.dumps([[p.pattern, repr(r)] for p, r in _RULES] + [_DISTRESS.pattern, _SENTENCE.pattern, _ANY.pattern])
    assert TABLES[IDIOMS_VERSION] == hashlib.sha256(table.encode()).hexdigest()[:16]
