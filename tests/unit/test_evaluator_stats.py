import itertools
import math
import random

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.proportion import proportion_confint

from evaluators.commands import render_prometheus_rules
from evaluators.cusum import BernoulliCusum
from evaluators.rules import State, Thresholds, classify_above, classify_below
from evaluators.window import LabelledConversation, cohen_kappa, compute_window, weighted_rate
from tests.helpers import ROOT
from vigil_core.stats import wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (190, 200), (47, 50), (0, 1), (3, 7)])
def test_wilson_interval_matches_statsmodels(k, n):
    lo, hi = wilson_interval(k, n)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert lo == pytest.approx(ref_lo, abs=1e-9) and hi == pytest.approx(ref_hi, abs=1e-9)


def test_wilson_interval_hand_checked_value():
    # 9/10: Wilson 95% is [0.5958, 0.9821] (standard tables)
    lo, hi = wilson_interval(9, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.5958, 0.9821)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_horvitz_thompson_totals_are_unbiased_over_every_possible_sample():
    # A small population: (crisis, flagged, pi). Flagged are always reviewed; unflagged with probability pi.
    population = [
        (True, True, 1.0), (True, True, 1.0), (True, False, 0.2), (True, False, 0.5), (False, False, 0.2),
        (False, True, 1.0), (True, False, 0.25), (False, False, 0.5),
    ]
    random_units = [i for i, (_, f, _) in enumerate(population) if not f]
    expect_caught = expect_crisis = 0.0
    for included in itertools.product([False, True], repeat=len(random_units)):
        prob = 1.0
        chosen = {i for i, (c, f, p) in enumerate(population) if f}
        for unit, inc in zip(random_units, included, strict=True):
            p = population[unit][2]
            prob *= p if inc else 1 - p
            if inc:
                chosen.add(unit)
        caught = sum(1 / population[i][2] for i in chosen if population[i][0] and population[i][1])
        crisis = sum(1 / population[i][2] for i in chosen if population[i][0])
        expect_caught += prob * caught
        expect_crisis += prob * crisis
    true_caught = sum(1 for c, f, _ in population if c and f)
    true_crisis = sum(1 for c, _, _ in population if c)
    assert expect_caught == pytest.approx(true_caught)
    assert expect_crisis == pytest.approx(true_crisis)
    assert expect_caught / expect_crisis == pytest.approx(true_caught / true_crisis)


def test_weighted_rate_uses_kish_effective_n():
    r = weighted_rate([True, True, False], [1.0, 1.0, 4.0])
    assert r.value == pytest.approx(2 / 6)
    assert r.n == pytest.approx(36 / 18)
    unweighted = weighted_rate([True] * 9 + [False], [1.0] * 10)
    assert (unweighted.lower, unweighted.upper) == pytest.approx(wilson_interval(9, 10))


def test_cohen_kappa_matches_sklearn():
    rng = random.Random(1)
    levels = ["no_risk", "low", "moderate", "high", "imminent"]
    pairs = [(rng.choice(levels), rng.choice(levels)) for _ in range(60)]
    pairs += [(a, a) for a, _ in pairs[:40]]
    ref = cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs])
    assert cohen_kappa(pairs).value == pytest.approx(ref)


def test_bernoulli_cusum_steps_and_alarm():
    c = BernoulliCusum(0.05, 0.10, 5.0, max_weight=5.0)
    assert c.miss_step == pytest.approx(math.log(2))
    assert c.hit_step == pytest.approx(math.log(0.9 / 0.95))
    assert c.step(0.0, False) == 0.0  # never negative
    s, first = c.run([True] * 8)
    assert first == 7 and s == pytest.approx(8 * math.log(2))
    # one sampled miss, however rare, cannot alone reach h: its weight is capped
    assert c.step(0.0, True, weight=500) < c.h


def _conv(i, t, crisis=True, flagged=True, pi=1.0, level=None, timely=True, second=None):
    levels = {"r1": level or ("high" if crisis else "no_risk")}
    if second:
        levels["r2"] = second
    return LabelledConversation(f"c{i}", t, levels, flagged, pi, timely)


def test_window_takes_the_last_n_crisis_conversations_within_max_age():
    now = 1_000_000.0
    items = [_conv(i, now - 1000 + i, flagged=i % 10 != 0) for i in range(300)]
    items.append(_conv(999, now - 100 * 86400, flagged=False))  # too old
    m = compute_window(items, now, window=200, max_age_s=90 * 86400)
    assert m.crisis_in_window == 200
    assert m.rates["crisis_recall"].value == pytest.approx(180 / 200)
    assert "c999" not in m.missed and len(m.missed) == 20


def test_the_window_names_the_missed_crises_the_warning_sign_route_sent_to_review():
    """A crisis the model missed that a clinician saw because a warning sign sent it to review is still a miss (the
    recall is the model's), and is counted apart: what the route finds. A sampled miss, a flagged crisis the route
    did not send, an ordinary conversation it sent, and one older than the window are not."""
    from dataclasses import replace

    now = 1000.0
    items = [replace(_conv(1, now - 5, flagged=False), warning_sign_review=True),
             _conv(2, now - 4, flagged=False),  # a sampled miss
             _conv(3, now - 3),  # caught
             replace(_conv(4, now - 2, crisis=False, flagged=False), warning_sign_review=True),
             replace(_conv(5, now - 100 * 86400, flagged=False), warning_sign_review=True)]  # too old
    m = compute_window(items, now, window=200, max_age_s=90 * 86400)
    assert m.found_by_warning_sign == ["c1"] and m.missed == ["c1", "c2"]
    assert m.rates["crisis_recall"].value == pytest.approx(1 / 3)
    assert m.to_dict()["found_by_warning_sign"] == ["c1"]


def test_window_rates_severe_timely_precision_specificity():
    now = 1000.0
    items = [
        _conv(1, 1, level="imminent"), _conv(2, 2, level="moderate", flagged=False, pi=0.5),
        _conv(3, 3, level="high", timely=False), _conv(4, 4, crisis=False, flagged=True),
        _conv(5, 5, crisis=False, flagged=False, pi=0.25), _conv(6, 6, level="imminent", flagged=False, pi=1.0),
    ]
    m = compute_window(items, now, window=200, max_age_s=1e9)
    # crisis: c1 (w1, hit), c2 (w2, miss), c3 (w1, hit), c6 (w1, miss) -> 2 / 5
    assert m.rates["crisis_recall"].value == pytest.approx(2 / 5)
    assert m.rates["severe_recall"].value == pytest.approx(2 / 3)
    assert m.rates["timely_recall"].value == pytest.approx(1 / 5)
    assert m.rates["precision"].value == pytest.approx(2 / 3)
    assert m.rates["specificity"].value == pytest.approx(4 / 5)  # c4 w1 flagged, c5 w4 not
    assert m.missed_imminent == ["c6"]


def test_rule_classification():
    rule = {"min_effective_n": 50, "warning_below": 0.95, "critical_below": 0.90}
    assert classify_below(0.99, 10, rule, "min_effective_n") == State.INSUFFICIENT_DATA
    assert classify_below(0.96, 60, rule, "min_effective_n") == State.OK
    assert classify_below(0.94, 60, rule, "min_effective_n") == State.WARNING
    assert classify_below(0.89, 60, rule, "min_effective_n") == State.CRITICAL
    above = {"min_count": 10, "warning_above": 5000, "critical_above": 10000}
    assert classify_above(6000, 100, above) == State.WARNING
    assert classify_above(10001, 100, above) == State.CRITICAL
    assert classify_above(5000, 100, above) == State.OK


def test_checked_in_prometheus_rules_are_generated_from_the_thresholds_file():
    expected = render_prometheus_rules(Thresholds.load())
    assert (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text() == expected, (
        "run `vigil rules export --prometheus` and commit deploy/prometheus/alerts.yml")


# -- simulation: the alert rules' error rates ---------------------------------------------------------

def _simulate(recall_before, recall_after, n_before, n_after, rng, window=200, min_n=50):
    """Index (counted from the change) of the first CRITICAL by window rule or CUSUM, or None."""
    misses = np.concatenate([rng.random(n_before) > recall_before, rng.random(n_after) > recall_after])
    cusum = BernoulliCusum()
    s = 0.0
    csum = np.concatenate([[0], np.cumsum(misses)])
    for t in range(len(misses)):
        s = cusum.step(s, bool(misses[t]))
        lo = max(0, t + 1 - window)
        n = t + 1 - lo
        recall = 1 - (csum[t + 1] - csum[lo]) / n
        if t >= n_before and (s >= cusum.h or (n >= min_n and recall < 0.90)):
            return t - n_before
    return None


def test_critical_false_alarms_at_true_recall_097_are_below_1_per_10000():
    rng = np.random.default_rng(7)
    cusum = BernoulliCusum()
    n = 200_000
    misses = rng.random(n) > 0.97
    s, alarms = 0.0, 0
    window = np.convolve(misses, np.ones(200), "valid")  # misses per 200-window
    window_alarms = int(np.sum(np.diff(np.concatenate([[False], 1 - window / 200 < 0.90]).astype(int)) == 1))
    for m in misses:
        s = cusum.step(s, bool(m))
        if s >= cusum.h:
            alarms += 1
            s = 0.0
    rate_per_10k = (alarms + window_alarms) / (n / 10_000)
    assert rate_per_10k < 1.0


def test_a_drop_to_085_reaches_critical_within_150_crisis_conversations_on_average():
    rng = np.random.default_rng(11)
    delays = [_simulate(0.97, 0.85, 200, 2000, rng) for _ in range(200)]
    assert all(d is not None for d in delays)
    assert float(np.mean(delays)) < 150


def test_an_adjudicated_level_replaces_the_reviewers_disagreement_in_the_window():
    """Issue 20: the most severe label silently won a disagreement, even after a clinical lead decided it."""
    from dataclasses import replace

    missed = [_conv(1, 1, level="imminent", second="no_risk", flagged=False), _conv(2, 2, level="high")]
    before = compute_window(missed, 10.0, window=200, max_age_s=1e9)
    assert before.rates["crisis_recall"].value == pytest.approx(1 / 2)  # waiting: the severe reading counts
    assert before.missed_imminent == ["c1"]
    decided = [replace(missed[0], adjudicated="low"), missed[1]]  # the lead: not a crisis
    after = compute_window(decided, 10.0, window=200, max_age_s=1e9)
    assert after.rates["crisis_recall"].value == pytest.approx(1.0) and after.missed_imminent == []
    upgraded = compute_window([replace(missed[1], levels={"r1": "low", "r2": "no_risk"}, adjudicated="moderate",
                                       flagged=False)], 10.0, window=200, max_age_s=1e9)
    assert upgraded.missed == ["c2"]  # and a decision can make a crisis of it too
