import numpy as np
import pytest

from pipeline.sampling import SamplingPolicy, uniform_from_id

POLICY = SamplingPolicy(threshold=0.2, pi_floor=0.002, pi_borderline=0.5, band=0.5)


def test_decision_is_a_deterministic_function_of_the_conversation_id():
    first = [POLICY.decide(f"conv-{i}", 0.05, False) for i in range(200)]
    again = [POLICY.decide(f"conv-{i}", 0.05, False) for i in range(200)]
    assert first == again
    assert uniform_from_id("abc") == uniform_from_id("abc") != uniform_from_id("abd")


def test_flagged_conversations_always_have_pi_one():
    d = POLICY.decide("x", 0.9, True)
    assert d.pi == 1.0 and d.selected and d.reason == "flagged"


@pytest.mark.parametrize("score", [0.0, 0.01, 0.05, 0.099, 0.1, 0.15, 0.199])
def test_pi_never_falls_below_the_floor_and_rises_near_the_threshold(score):
    pi, reason = POLICY.inclusion_probability(score, False)
    assert 0.002 <= pi <= 0.5
    assert reason == ("borderline" if score >= 0.1 else "sampled")


def test_pi_is_monotonic_in_the_score():
    scores = np.linspace(0, 0.1999, 200)
    pis = [POLICY.inclusion_probability(float(s), False)[0] for s in scores]
    assert all(b >= a for a, b in zip(pis, pis[1:], strict=False))
    assert pis[-1] == pytest.approx(0.5, abs=0.01)


def test_backup_scored_conversations_are_reviewed_at_the_borderline_rate():
    pi, reason = POLICY.inclusion_probability(0.0, False, backup=True)
    assert pi == 0.5 and reason == "borderline"


@pytest.mark.parametrize(("score", "expected_pi"), [(0.0, 0.05), (0.15, None)])
def test_observed_sampling_rate_matches_the_configured_probability(score, expected_pi):
    policy = SamplingPolicy(threshold=0.2, pi_floor=0.05, pi_borderline=0.5, band=0.5)
    pi, _ = policy.inclusion_probability(score, False)
    if expected_pi is not None:
        assert pi == expected_pi
    n = 20_000
    selected = sum(policy.decide(f"c{i}", score, False).selected for i in range(n))
    # 4.5 standard deviations: fails only if the hash draw is not uniform
    sd = (pi * (1 - pi) / n) ** 0.5
    assert abs(selected / n - pi) < 4.5 * sd


def test_a_warning_sign_raises_an_unflagged_conversation_to_pi_warning_sign_and_never_lowers_one():
    policy = SamplingPolicy(threshold=0.2, pi_floor=0.002, pi_borderline=0.5, band=0.5, pi_warning_sign=0.3)
    low = policy.decide("w", 0.001, False, warning_sign=True)
    assert (low.pi, low.reason) == (0.3, "warning_sign")
    assert policy.decide("w", 0.001, False).reason == "sampled"
    near = policy.decide("w", 0.19, False, warning_sign=True)  # the borderline band's pi is higher: it stays
    assert near.reason == "borderline" and near.pi > 0.3
    flagged = policy.decide("w", 0.9, True, warning_sign=True)
    assert (flagged.pi, flagged.reason, flagged.selected) == (1.0, "flagged", True)
    always = SamplingPolicy(threshold=0.2).decide("w", 0.0, False, unvalidated_language=True, warning_sign=True)
    assert (always.pi, always.reason, always.selected) == (1.0, "warning_sign", True)  # the default: every one
