"""The chat contrast files (data/chat_contrast) are well formed and hold none of the phrasings tests and the demo judge.

Their rows train models (chat_contrast.csv trained the shipped one) or measure them, so a regression phrasing or
demo turn inside them would turn those checks into memory tests.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import BENIGN as PIPELINE_BENIGN
from tests.helpers import CRISIS as PIPELINE_CRISIS
from tests.unit.test_classifier import BENIGN, CRISIS

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "data" / "chat_contrast").glob("*.csv"))
DEMO = ROOT / "demo" / "data" / "conversations.json"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower().replace("’", "'").replace("'", "")).strip()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _all_rows() -> list[dict[str, str]]:
    return [row for path in FILES for row in _rows(path)]


def test_the_folder_holds_both_files():
    assert [p.name for p in FILES] == ["chat_contrast.csv", "chat_coping.csv"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_rows_are_labelled_split_and_unique(path):
    rows = _rows(path)
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({_norm(r["text"]) for r in rows}) == len(rows)
    assert {r["label"] for r in rows} == {"crisis", "no_crisis"}
    assert all((r["class"] == "chat_crisis") == (r["label"] == "crisis") for r in rows)
    counts = Counter((r["split"], r["label"]) for r in rows)
    assert {r["split"] for r in rows} <= {"train", "validation", "test"}
    assert all(counts[(s, lab)] > 0 for s in ("train", "test") for lab in ("crisis", "no_crisis"))
    assert all(len(r["text"].split()) <= 30 for r in rows)  # chat-length turns


def test_no_turn_is_in_two_files():
    rows = _all_rows()
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({_norm(r["text"]) for r in rows}) == len(rows)


def test_no_judged_phrasing_is_in_the_contrast_set():
    demo_user_turns = [turn for conv in json.loads(DEMO.read_text()) for turn in conv["turns"][::2]]
    judged = [_norm(t) for t in CRISIS + BENIGN + list(PIPELINE_CRISIS) + list(PIPELINE_BENIGN) + demo_user_turns]
    for row in _all_rows():
        text = _norm(row["text"])
        clash = [j for j in judged if text in j or j in text]
        assert not clash, f"{row['id']} overlaps a judged phrasing: {clash[0]!r}"
