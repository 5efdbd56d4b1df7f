"""Calibration (Platt scaling): a model's logits to probabilities. The threshold chosen for a target recall is
training's (`models.training.thresholds`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlattCalibration"]


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

    def logit_at(self, probability: float) -> float:
        """The uncalibrated logit whose calibrated score is `probability` (the inverse of __call__)."""
        p = min(max(float(probability), 1e-12), 1 - 1e-12)
        return (float(np.log(p / (1 - p))) - self.b) / self.a

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"a": self.a, "b": self.b}
