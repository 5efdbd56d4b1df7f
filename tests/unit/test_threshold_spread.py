"""How firm the operating threshold is: the bootstrap of the validation crisis conversations (issue 31)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from models.artifact import ARTIFACT_FILE, DEFAULT_MODEL_DIR
from models.training.threshold_spread import SECTION, _deciding_rank, card_section, spread
from models.training.thresholds import threshold_for_recall


def test_the_threshold_is_set_by_the_conversation_the_recall_floor_leaves_last():
    assert _deciding_rank(106, 0.98) == 3  # 104 of 106 must be flagged: the third-lowest sets it
    assert _deciding_rank(100, 0.98) == 3 and _deciding_rank(50, 0.98) == 2 and _deciding_rank(1000, 0.98) == 21
    scores = np.linspace(0.01, 0.99, 106)
    assert threshold_for_recall(scores, np.ones(106, bool), 0.98) == pytest.approx(np.sort(scores)[2], rel=0.03)


def test_a_set_of_equal_scores_leaves_the_threshold_nowhere_to_move_and_test_is_measured_at_it():
    validation = np.full(50, 0.2)
    test_scores = np.array([0.1, 0.3, 0.5, 0.05, 0.25, 0.15])
    test_labels = np.array([True, True, True, False, False, False])
    out = spread(validation, test_scores, test_labels, 0.98, resamples=200)
    low, mid, high = out["threshold"]
    assert low == mid == high < 0.2
    assert out["test_recall"] == [pytest.approx(2 / 3)] * 3  # 0.3 and 0.5 reach it, 0.1 does not
    assert out["test_flagged"] == [pytest.approx(1 / 3)] * 3  # 0.25 alone
    assert (out["n_validation_crisis"], out["n_test_crisis"], out["n_test_ordinary"]) == (50, 3, 3)


def test_a_few_low_crisis_scores_spread_the_threshold_and_what_it_gives_on_test():
    rng = np.random.default_rng(1)
    # most crisis conversations score high; four score low, and which of them a draw holds moves the threshold
    validation = np.concatenate([rng.uniform(0.3, 0.99, 102), [0.001, 0.004, 0.01, 0.03]])
    test_scores = np.concatenate([rng.uniform(0.0, 1.0, 400), rng.uniform(0.0, 0.05, 2000)])
    test_labels = np.arange(test_scores.size) < 400
    out = spread(validation, test_scores, test_labels, 0.98, resamples=1000)
    low, mid, high = out["threshold"]
    assert low < 0.005 and high > 0.02 and low < mid < high
    assert out["test_recall"][0] < out["test_recall"][2] and out["test_flagged"][0] < out["test_flagged"][2]
    # the same draws (a seed) give the same spread
    assert spread(validation, test_scores, test_labels, 0.98, resamples=1000) == out
    # a recall floor of 1 needs every crisis conversation: the lowest decides it
    assert spread(validation, test_scores, test_labels, 1.0, resamples=100)["deciding_rank"] == 1
    with pytest.raises(ValueError):
        spread(np.array([]), test_scores, test_labels, 0.98)


def test_the_section_states_the_spread_and_the_shipped_card_has_it():
    out = {"n_validation_crisis": 106, "resamples": 2000, "deciding_rank": 3, "threshold": [0.0025, 0.011, 0.0401],
           "test_recall": [0.908, 0.969, 0.992], "test_flagged": [0.024, 0.048, 0.105], "n_test_crisis": 131,
           "n_test_ordinary": 3073}
    text = card_section(out, 0.011, 0.011, 0.98)
    assert text.startswith(SECTION) and "ranked 3 from the lowest" in text
    assert "0.0025 to 0.0401 (median 0.0110)" in text and "**90.8% to 99.2% (median 96.9%)**" in text
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    shipped = json.loads((DEFAULT_MODEL_DIR / ARTIFACT_FILE).read_text())
    section = card[card.index(SECTION):card.index("## Limits")]
    assert f"The threshold ({shipped['threshold']:.4f})" in section
    low, mid, high = (float(x) for x in re.search(r"the threshold: (\S+) to (\S+) \(median (\S+)\)", section)
                      .group(1, 3, 2))
    assert low <= shipped["threshold"] <= high
