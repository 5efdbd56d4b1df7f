"""The operating threshold chosen for a target recall, with a margin that rounding cannot cross."""

from __future__ import annotations

import numpy as np

from vigil_core.rule_names import TARGET_RECALL

__all__ = ["threshold_for_recall", "needed_for_recall", "THRESHOLD_MARGIN_LOGIT"]


# How far below the deciding crisis score the threshold sits, in log-odds. Without it the threshold
# equals one crisis example's score, and rounding (fp16 weights, another batch's padding, another
# thread count) flips that example to "not flagged" at run time: recall silently one example lower.
THRESHOLD_MARGIN_LOGIT = 0.02


def needed_for_recall(n: int, target: float) -> int:
    """How many of `n` positive examples a recall of at least `target` needs flagged."""
    return int(np.ceil(target * n - 1e-9))


def threshold_for_recall(
    scores: np.ndarray, labels: np.ndarray, target: float = TARGET_RECALL, margin_logit: float = THRESHOLD_MARGIN_LOGIT
) -> float:
    """A threshold with recall on (scores, labels) of at least `target` (flag: score >= t).

    It is the score of the crisis example that decides the target, lowered by `margin_logit` in
    log-odds so numerical noise of the order of 1e-6 cannot move that example below it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    positives = np.sort(scores[labels])[::-1]
    if positives.size == 0:
        raise ValueError("no positive examples to choose a threshold from")
    need = needed_for_recall(positives.size, target)
    deciding = float(np.clip(positives[need - 1], 1e-12, 1 - 1e-12))
    logit = np.log(deciding / (1.0 - deciding)) - margin_logit
    return float(1.0 / (1.0 + np.exp(-logit)))
