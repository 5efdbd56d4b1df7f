"""The alert rules' names (evaluators/thresholds.toml's tables), one place for every package that names a rule: the
evaluator that computes them, the scorers that feed one, the incident reports, the review app and the demo that read
them. A rate and the rule that watches it share the name (`crisis_recall`)."""

from __future__ import annotations

__all__ = ["RECALL_RULE", "CUSUM_RULE", "SENTINEL_RULE", "LANGUAGE_RULE", "HARMFUL_RULE", "OPS_RULES", "TARGET_RECALL"]

RECALL_RULE = "crisis_recall"
CUSUM_RULE = "crisis_recall_cusum"
SENTINEL_RULE = "sentinel"
LANGUAGE_RULE = "language_recall"
# Written by the scorers (they score the AI's replies), read by the evaluator.
HARMFUL_RULE = "harmful_response_rate"
OPS_RULES = ("ai_latency_p95_ms", "ai_error_rate", "user_satisfaction", HARMFUL_RULE)

# The crisis recall a model's threshold is chosen for on validation, unless a command says otherwise: two points above
# the crisis-recall rule's 95% warning line (evaluators/thresholds.toml), so an ordinary day reads above it. Training
# (`vigil train --target-recall`), calibration and the multilingual model use this one number.
TARGET_RECALL = 0.97
