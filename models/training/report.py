"""Classification metrics at an operating threshold, each rate with its Wilson 95% interval."""

from __future__ import annotations

from typing import Any

import numpy as np

from vigil_core.stats import rate

__all__ = ["classification_report", "group_max", "flag_rate"]


def classification_report(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """n, n_crisis, ROC-AUC, PR-AUC, threshold, recall, precision, specificity, intervals."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    flagged = scores >= threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    tn = int(np.sum(~flagged & ~y))
    fn = int(np.sum(~flagged & y))
    both = 0 < y.sum() < y.size
    recall = rate(tp, tp + fn)
    precision = rate(tp, tp + fp)
    specificity = rate(tn, tn + fp)
    return {
        "n": int(y.size),
        "n_crisis": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, scores)) if both else None,
        "pr_auc": float(average_precision_score(y, scores)) if both else None,
        "threshold": float(threshold),
        "recall": recall.value,
        "recall_ci": [recall.lower, recall.upper],
        "precision": precision.value,
        "precision_ci": [precision.lower, precision.upper],
        "specificity": specificity.value,
        "specificity_ci": [specificity.lower, specificity.upper],
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def group_max(groups: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the highest score and whether any row is positive (how Vigil flags conversations)."""
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    best = np.full(uniq.size, -np.inf)
    np.maximum.at(best, inverse, np.asarray(scores, dtype=np.float64))
    positive = np.zeros(uniq.size, dtype=bool)
    np.logical_or.at(positive, inverse, np.asarray(labels).astype(bool))
    return best, positive


def flag_rate(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float | None, list[float]]:
    """The share of no_crisis items at or above the threshold (the reviewers' workload), with its Wilson 95%
    interval."""
    ordinary = ~np.asarray(labels, dtype=bool)
    r = rate(int(np.sum(np.asarray(scores, dtype=np.float64)[ordinary] >= threshold)), int(ordinary.sum()))
    return r.value, [r.lower, r.upper]
