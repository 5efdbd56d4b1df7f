"""A second opinion for the English crisis model, measured (issue 31): the multilingual model's score of every turn
added to the shipped model's, and what the two together flag at the same crisis recall.

    python bench/second_opinion.py [--weights 0 0.1 0.2 0.3 0.5]

The shipped chat model scores every user turn as the scorer does (alone and in context, `turn_scores`); the
multilingual model (universal-sentence-encoder-multilingual v3 and a logistic regression fitted on the English
chat-form training turns, models/artifacts/multilingual: it never saw a validation or test turn, and costs about a
millisecond a turn) scores each turn alone. A turn's combined log-odds is logit(chat) + w * logit(multilingual); a
conversation's is its highest turn's. For each weight w the threshold is set by the shipped card's rule on the
chat-form + kinds **validation** conversations (the highest keeping 99% of the 106 crisis ones: the second lowest),
and measured on the combined test split (as the card's "What the loop needs"), the small talk test split and the
long questions to a therapist. w = 0 is the shipped model under this rule (the rule on served scores; the card's
threshold, 0.0127, is set by the rule on the torch scores: a few flags apart). The blind sets are not read: a model
built on this must be measured blind by a set it has not been chosen on (data/chat_form/SOURCE.md). Prints one JSON
object; about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import logit  # noqa: E402

from models.classifier import CrisisClassifier  # noqa: E402
from models.multilingual import MultilingualModel, encode  # noqa: E402
from models.training.chat_data import ChatRows, load_chat, turn_scores  # noqa: E402
from models.training.kinds import CHAT_DIR, _joined, combined_test  # noqa: E402
from models.training.report import group_max  # noqa: E402

RECALL = 0.99  # the shipped card's chat recall target


def conversations(rows: ChatRows, turn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each conversation's highest turn value, whether it is a crisis, and its first row's index."""
    top, crisis = group_max(rows.conversation, turn, rows.labels)
    _, first = np.unique(rows.conversation, return_index=True)
    return top, crisis, first


def scored(clf: CrisisClassifier, second: MultilingualModel, rows: ChatRows) -> dict[str, Any]:
    chat, _ = turn_scores(clf, rows)
    start = time.perf_counter()
    other = second.predict_embeddings(encode(rows.texts))
    return {"rows": rows, "chat": logit(chat), "second": logit(other),
            "second_ms_a_turn": 1000 * (time.perf_counter() - start) / max(len(rows), 1)}


def measure(s: dict[str, Any], w: float, threshold: float, kinds: np.ndarray | None) -> dict[str, Any]:
    top, crisis, first = conversations(s["rows"], s["chat"] + w * s["second"])
    flagged = top >= threshold
    out: dict[str, Any] = {"crisis": int(crisis.sum()), "caught": int(flagged[crisis].sum()),
                           "ordinary": int((~crisis).sum()), "flagged": int(flagged[~crisis].sum())}
    if kinds is not None:
        kind = kinds[first]
        out["by_kind"] = {k: f"{int(flagged[kind == k].sum())}/{int((kind == k).sum())}"
                          for k in sorted(set(kind.tolist()))}
        source = s["rows"].source[first]
        out["ordinary_by_source"] = {k: f"{int(flagged[~crisis & (source == k)].sum())}/"
                                        f"{int((~crisis & (source == k)).sum())}"
                                     for k in sorted(set(source[~crisis].tolist()))}
    return out


def rule_threshold(s: dict[str, Any], w: float) -> float:
    """The highest threshold keeping RECALL of the validation crisis conversations (the card's rule)."""
    top, crisis, _ = conversations(s["rows"], s["chat"] + w * s["second"])
    ranked = np.sort(top[crisis])
    return float(ranked[int(np.floor((1 - RECALL) * len(ranked)))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 1.0])
    args = parser.parse_args()
    clf = CrisisClassifier.load()
    second = MultilingualModel.load()
    validation, _ = _joined([CHAT_DIR / "chat_validation.csv", CHAT_DIR / "kinds_validation.csv"])
    test, kinds = combined_test()
    sets = {"validation": (scored(clf, second, validation), None), "test": (scored(clf, second, test), kinds),
            "small_talk_test": (scored(clf, second, load_chat(CHAT_DIR / "chitchat_test.csv")), None),
            "therapy_long_test": (scored(clf, second, load_chat(CHAT_DIR / "therapy_long_test.csv")), None)}
    table = []
    for w in args.weights:
        threshold = rule_threshold(sets["validation"][0], w)
        table.append({"weight": w, "threshold_log_odds": round(threshold, 4),
                      **{name: measure(s, w, threshold, k) for name, (s, k) in sets.items()}})
    print(json.dumps({"machine": platform.processor() or platform.machine(), "model": clf.model_version,
                      "second": second.version,
                      "second_ms_a_turn": round(sets["test"][0]["second_ms_a_turn"], 3), "table": table}, indent=1))


if __name__ == "__main__":
    main()
