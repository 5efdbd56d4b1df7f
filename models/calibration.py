"""Calibration (Platt scaling) and the operating threshold chosen for a target recall."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil_core.rule_names import TARGET_RECALL

__all__ = ["PlattCalibration", "threshold_for_recall", "TARGET_RECALL"]


@dataclass(frozen=True, slots=True)
class PlattCalibration:
    """p = sigmoid(a * logit + b) with a > 0, so calibrated scores keep the logits' order."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> PlattCalibration:
        """Fit on held-out logits and 0/1 labels (unregularised logistic regression on one feature)."""
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), np.asarray(labels, dtype=int))
        a = float(lr.coef_[0, 0])
        if a <= 0:
            # A non-increasing fit would invert the ranking: keep the raw logits' order instead.
            return cls(1.0, 0.0)
        return cls(a, float(lr.intercept_[0]))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = self.a * np.asarray(logits, dtype=np.float64) + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"a": self.a, "b": self.b}


# How far below the deciding crisis score the threshold sits, in log-odds. Without it the threshold
# equals one crisis example's score, and rounding (fp16 weights, another batch's padding, another
# thread count) flips that example to "not flagged" at run time: recall silently one example lower.
THRESHOLD_MARGIN_LOGIT = 0.02


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
    need = int(np.ceil(target * positives.size - 1e-9))
    deciding = float(np.clip(positives[need - 1], 1e-12, 1 - 1e-12))
    logit = np.log(deciding / (1.0 - deciding)) - margin_logit
    return float(1.0 / (1.0 + np.exp(-logit)))
