"""The model lifecycle's pure parts: the paired comparison against a hand-computed case, the promotion rule, the
model store's content-hash versions, and review sampling of disagreements."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evaluators.compare import Paired, compare_versions, paired_difference, promotion_check
from models.errors import ModelError
from models.store import ModelStore, content_hash, key_metrics
from pipeline.sampling import SamplingPolicy, uniform_from_id
from tests.helpers import model_copy


def test_paired_recall_difference_matches_a_hand_computed_case() -> None:
    # Four crisis conversations: weights 1, 1, 2, 4 (pi 1, 1, 0.5, 0.25).
    # champion flags a, b, c; candidate flags a, b, d.  sum w y = 8.
    # D = (0 + 0 - 2 + 4) / 8 = 0.25.  residuals (b - a - D): -0.25, -0.25, -1.25, 0.75
    # var = (1*0.0625 + 1*0.0625 + 4*1.5625 + 16*0.5625) / 64 = (0.125 + 6.25 + 9) / 64 = 15.375 / 64
    items = [
        Paired("a", True, 1.0, True, True), Paired("b", True, 1.0, True, True),
        Paired("c", True, 2.0, True, False), Paired("d", True, 4.0, False, True),
        Paired("o1", False, 1.0, True, False), Paired("o2", False, 3.0, False, False),
    ]
    d = paired_difference(items, crisis=True)
    se = math.sqrt(15.375 / 64)
    assert d.value == pytest.approx(0.25)
    assert d.lower == pytest.approx(0.25 - 1.959963984540054 * se)
    assert d.upper == pytest.approx(min(1.0, 0.25 + 1.959963984540054 * se))
    comparison = compare_versions(items, "champ", "cand")
    assert comparison.recall_champion.value == pytest.approx(4 / 8)  # a, b, c: 1 + 1 + 2
    assert comparison.recall_candidate.value == pytest.approx(6 / 8)  # a, b, d: 1 + 1 + 4
    # ordinary: the champion flagged o1 (weight 1 of 4), the candidate none
    assert comparison.flag_rate_champion.value == pytest.approx(0.25)
    assert comparison.flag_rate_candidate.value == pytest.approx(0.0)
    assert comparison.flag_rate_difference.value == pytest.approx(-0.25)
    assert comparison.n == 6 and comparison.n_crisis == 4 and comparison.disagreements == 3


def test_identical_verdicts_have_a_zero_width_difference() -> None:
    items = [Paired(str(i), i % 3 == 0, 1.0 + i % 2, i % 2 == 0, i % 2 == 0) for i in range(60)]
    d = paired_difference(items, crisis=True)
    assert (d.value, d.lower, d.upper) == (0.0, 0.0, 0.0)


def test_promotion_refuses_a_recall_drop_and_too_few_crises_and_allows_no_worse() -> None:
    same = [Paired(str(i), True, 1.0, True, True) for i in range(40)]
    assert promotion_check(compare_versions(same, "a", "b"), 0.02, 30).allowed
    assert not promotion_check(compare_versions(same[:10], "a", "b"), 0.02, 30).allowed  # too few labels
    worse = [Paired(str(i), True, 1.0, True, i % 10 != 0) for i in range(40)]  # the candidate misses 4 of 40
    check = promotion_check(compare_versions(worse, "a", "b"), 0.02, 30)
    assert not check.allowed and check.recall_drop_upper is not None and check.recall_drop_upper > 0.1
    better = [Paired(str(i), True, 1.0, i % 10 != 0, True) for i in range(40)]
    assert promotion_check(compare_versions(better, "a", "b"), 0.02, 30).allowed


def test_store_versions_are_content_hashes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    a = model_copy(tmp_path, "a")
    b = model_copy(tmp_path, "b", threshold=0.5)
    first = store.register(a, note="first")
    again = store.register(a, note="again")
    other = store.register(b)
    assert first.version == again.version == content_hash(a) and again.note == "first"  # same content, one version
    assert other.version != first.version  # one changed byte, another version
    assert [e.version for e in store.entries()] == sorted([first.version, other.version],
                                                          key=lambda v: (store.entry(v).registered_at, v))
    assert content_hash(store.path(first.version)) == first.version  # the copy is the registered content
    assert first.metrics["threshold"] == pytest.approx(json.loads((a / "vigil_model.json").read_text())["threshold"])
    assert "chat_recall" in key_metrics(a) and "posts_roc_auc" in key_metrics(a)
    with pytest.raises(ModelError):
        store.path("not-registered")
    with pytest.raises(ModelError):
        store.path("../escape")
    with pytest.raises(ModelError):
        store.register(tmp_path)  # not a model directory


def test_a_disagreement_raises_inclusion_probability_only_when_unflagged() -> None:
    policy = SamplingPolicy(threshold=0.5, pi_floor=0.002, pi_disagreement=0.5)
    low = policy.decide("conv-x", 0.01, flagged=False)
    assert (low.pi, low.reason) == (0.002, "sampled")
    disagree = policy.decide("conv-x", 0.01, flagged=False, disagreement=True)
    assert (disagree.pi, disagree.reason) == (0.5, "disagreement")
    assert disagree.selected == (uniform_from_id("conv-x") < 0.5)  # the same hash draw as every other decision
    flagged = policy.decide("conv-x", 0.9, flagged=True, disagreement=True)
    assert (flagged.pi, flagged.reason) == (1.0, "flagged")
