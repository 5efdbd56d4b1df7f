"""How firm the operating threshold is (issue 31): `python -m models.training.threshold_spread --card MODEL_DIR`.

A chat model's threshold is the highest score that keeps its crisis recall floor (`chat_recall`, 0.98) on the
validation crisis conversations: with about a hundred of them it is the score of the second- or third-lowest, and
another draw of a hundred would have set it elsewhere. This measures how far: the validation crisis conversations
are resampled with replacement, the threshold chosen by the same rule on each resample, and the combined test split
(the chat-form and kinds test conversations, as the card's "What the loop needs") measured at each of those
thresholds. The spread is what the validation set's size leaves open before any model is compared: two models whose
validation numbers differ by less are not told apart by it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.classifier import CrisisClassifier
from models.training.chat_data import load_chat, score_conversations, split_files, turn_scores
from models.training.thresholds import needed_for_recall, threshold_for_recall
from models.training.urgent_level import CHAT_DIR, write_card_section

__all__ = ["spread", "validation_crisis_scores", "card_section", "SECTION"]

SECTION = "## How firm the operating point is (issue 31)"
PERCENTILES = (5, 50, 95)


def _deciding_rank(n: int, recall: float) -> int:
    """Which crisis conversation, counted from the lowest score, the threshold is set by (1: the lowest)."""
    return n - needed_for_recall(n, recall) + 1


def spread(validation_crisis: np.ndarray, test_scores: np.ndarray, test_labels: np.ndarray, recall: float,
           resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Percentiles (5, 50, 95) of the threshold chosen at `recall` on `resamples` draws with replacement of the
    validation crisis conversations' scores, and of the test recall and ordinary flag rate at those thresholds (test:
    conversation scores and whether each is a crisis)."""
    validation_crisis = np.asarray(validation_crisis, dtype=np.float64)
    if validation_crisis.size == 0:
        raise ValueError("no validation crisis conversations")
    test_scores = np.asarray(test_scores, dtype=np.float64)
    test_labels = np.asarray(test_labels).astype(bool)
    n = validation_crisis.size
    rng = np.random.default_rng(seed)
    positives = np.ones(n, dtype=bool)
    thresholds = np.array([threshold_for_recall(rng.choice(validation_crisis, n, replace=True), positives, recall)
                           for _ in range(resamples)])
    crisis, ordinary = np.sort(test_scores[test_labels]), np.sort(test_scores[~test_labels])
    # the share at or above each threshold (flag: score >= t), by binary search on the sorted scores
    test_recall = 1.0 - np.searchsorted(crisis, thresholds, side="left") / max(crisis.size, 1)
    test_flagged = 1.0 - np.searchsorted(ordinary, thresholds, side="left") / max(ordinary.size, 1)

    def pct(values: np.ndarray) -> list[float]:
        return [float(v) for v in np.percentile(values, PERCENTILES)]

    return {"n_validation_crisis": n, "resamples": resamples, "deciding_rank": _deciding_rank(n, recall),
            "threshold": pct(thresholds), "test_recall": pct(test_recall), "test_flagged": pct(test_flagged),
            "n_test_crisis": int(crisis.size), "n_test_ordinary": int(ordinary.size)}


def validation_crisis_scores(clf: CrisisClassifier, kinds: bool, chat_dir: Path = CHAT_DIR) -> np.ndarray:
    """The scores of the validation crisis conversations the model's threshold was chosen on (the chat-form
    validation split, and with `kinds` the kinds' too: the model was fitted with them), as `clf` scores them."""
    rows = load_chat(*split_files(chat_dir, "validation", kinds=kinds))
    scores, labels, _ = score_conversations(rows, turn_scores(clf, rows)[0])
    return scores[labels]


def _range(values: list[float], pct: bool = True) -> str:
    low, mid, high = values
    if pct:
        return f"{100 * low:.1f}% to {100 * high:.1f}% (median {100 * mid:.1f}%)"
    return f"{low:.4f} to {high:.4f} (median {mid:.4f})"


def card_section(observed: dict[str, Any], served: float, rule: float, recall: float,
                 sets: str = "chat-form and kinds") -> str:
    """The card's section: the spread of the threshold and of what it gives on test (`sets`: which validation sets
    the crisis conversations are of)."""
    n = observed["n_validation_crisis"]
    return "\n".join([
        SECTION,
        f"The threshold ({served:.4f}) is the highest that keeps {recall:.0%} of the {n} validation crisis "
        f"conversations ({sets}) flagged: it is set by the one ranked {observed['deciding_rank']} from "
        f"the lowest score (as the served backend scores them, the rule gives {rule:.4f}). Those {n} conversations "
        f"were resampled ({observed['resamples']:,} draws with replacement), the threshold chosen by the same rule on "
        f"each draw, and the combined test split ({observed['n_test_crisis']} crisis and "
        f"{observed['n_test_ordinary']:,} ordinary conversations, as above) measured at each "
        "(`python -m models.training.threshold_spread --card MODEL_DIR` writes this section). In 90% of the draws:",
        "",
        f"- the threshold: {_range(observed['threshold'], pct=False)};",
        f"- test crisis recall at it: **{_range(observed['test_recall'])}**;",
        f"- test ordinary conversations flagged at it: **{_range(observed['test_flagged'])}**.",
        "",
        "What it says: the operating point rests on the few lowest-scoring validation crisis conversations, and "
        "another hundred would have set it elsewhere in that range. A retraining or a model comparison whose "
        "validation flag rate or threshold moves by less than this is not told apart from another draw of "
        "validation conversations, and the test recall this model would have had with its threshold chosen on "
        "another draw lies anywhere in the range above. A larger clinician-labelled validation set (the review "
        "app's labels, some hundreds of crises) is what narrows it: the threshold is then set by the 7th-lowest of "
        "300 or the 21st-lowest of 1,000, which no one conversation moves far.",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    from models.training.kinds import combined_test

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, required=True, help="the model directory whose card gets the section")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    clf = CrisisClassifier.load(args.card)
    chat_config = clf.info.extra.get("chat_config", {})
    recall, kinds = float(chat_config.get("chat_recall", 0.98)), bool(chat_config.get("kinds"))
    validation = validation_crisis_scores(clf, kinds)
    rows, _ = combined_test()
    test_scores, test_labels, _ = score_conversations(rows, turn_scores(clf, rows)[0])
    observed = spread(validation, test_scores, test_labels, recall, args.resamples)
    rule = threshold_for_recall(validation, np.ones(validation.size, dtype=bool), recall)
    write_card_section(args.card, card_section(observed, clf.threshold, rule, recall,
                                               "chat-form and kinds" if kinds else "chat-form"), SECTION)
    print(f"threshold {_range(observed['threshold'], pct=False)}, test recall {_range(observed['test_recall'])}, "
          f"flagged {_range(observed['test_flagged'])}")


if __name__ == "__main__":
    main()
