"""Redaction of identifiers (review/redaction.py), measured on a labelled file of 107 lines
(tests/data/pii_redaction.csv: `text`, and `pii`: the identifiers that must not survive, `|`-separated; none on
lines that hold no identifier and must come out unchanged)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from review.redaction import redact

ROWS = list(csv.DictReader((Path(__file__).parents[1] / "data" / "pii_redaction.csv").open(encoding="utf-8")))
WITH_PII = [r for r in ROWS if r["pii"]]
CLEAN = [r for r in ROWS if not r["pii"]]
# Measured: 65 of 66 lines with identifiers fully redacted, 41 of 41 clean lines unchanged. The one miss: a
# lower-case name after "call me" ("people call me jenny"), which the rules leave alone because "call me crazy"
# and "call me back" are far more common.
KNOWN_MISSES = {"people call me jenny"}


def _leaks(row: dict[str, str]) -> list[str]:
    out = redact(row["text"])
    return [p for p in row["pii"].split("|") if p and p in out]


def test_the_labelled_file_is_large_enough_to_measure():
    assert len(ROWS) >= 100 and len(WITH_PII) >= 60 and len(CLEAN) >= 40


def test_identifiers_are_redacted_on_all_but_the_known_misses():
    leaked = {r["text"] for r in WITH_PII if _leaks(r)}
    assert leaked == KNOWN_MISSES
    assert (len(WITH_PII) - len(leaked)) / len(WITH_PII) >= 0.98


def test_lines_without_identifiers_are_left_alone():
    changed = [(r["text"], redact(r["text"])) for r in CLEAN if redact(r["text"]) != r["text"]]
    assert changed == []


@pytest.mark.parametrize(("text", "secret"), [
    ("call me at 555-1234", "555-1234"), ("my ssn is 123-45-6789", "123-45-6789"),
    ("my name is john smith", "john smith"), ("i am Sarah Connor", "Sarah Connor"),
    ("follow @sadgirl_99", "sadgirl_99"), ("my date of birth is 12/03/1990", "1990"),
])
def test_each_identifier_the_review_found_leaking_is_redacted(text, secret):
    """Issue 20's list: the old patterns let every one of these through."""
    assert secret not in redact(text)
