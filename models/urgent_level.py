"""Measure candidate urgent levels on the chat-form conversations (issue 22): `python -m models.urgent_level`.

For each candidate threshold on the calibrated score, with the imminent phrases (models/lexicon/imminent/) as
well: the share of crisis conversations that would be urgent (paged and handed off) and the share of ordinary
ones that would page a clinician for nothing. The rule that chose `VIGIL_URGENT_THRESHOLD` (on validation only):
the lowest threshold that pages at most 0.3% of ordinary conversations (3 in 1,000).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.backup import ImminentPhrases
from models.chat_train import load_chat, score_conversations, turn_scores
from models.classifier import CrisisClassifier

__all__ = ["measure", "CANDIDATES", "MAX_ORDINARY_PAGE_RATE"]

CANDIDATES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
MAX_ORDINARY_PAGE_RATE = 0.003
CHAT_DIR = Path(__file__).resolve().parent.parent / "data" / "chat_form"


def measure(clf: CrisisClassifier, split: str) -> dict[str, dict[str, float]]:
    """Per candidate threshold: crisis conversations caught, ordinary conversations paged (with the phrases)."""
    rows = load_chat(CHAT_DIR / f"chat_{split}.csv")
    scores, labels, _ = score_conversations(rows, turn_scores(clf, rows)[0])
    phrases = ImminentPhrases()
    hit_turn = np.array([phrases.search(t) for t in rows.texts])
    hit = score_conversations(rows, hit_turn.astype(np.float64))[0] > 0  # any turn of the conversation
    out = {}
    for thr in CANDIDATES:
        urgent = (scores >= thr) | hit
        out[f"{thr:.2f}"] = {"crisis_urgent": float(urgent[labels].mean()), "n_crisis": int(labels.sum()),
                             "ordinary_paged": float(urgent[~labels].mean()), "n_ordinary": int((~labels).sum()),
                             "ordinary_paged_n": int(urgent[~labels].sum())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    args = parser.parse_args()
    print(json.dumps(measure(CrisisClassifier.load(), args.split), indent=1))


if __name__ == "__main__":
    main()
