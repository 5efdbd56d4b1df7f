"""The model card's pictures: ROC and PR curves, a reliability diagram, score histograms (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_card_plots", "PLOT_FILES"]

PLOT_FILES = ("roc_pr.png", "reliability.png", "histograms.png")
_BINS = 10  # reliability bins (equal width in probability)


def write_card_plots(out: Path, sets: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float) -> list[Path]:
    """Write the pictures for each named (scores, labels) set into `out`; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    paths = []
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (scores, labels) in sets.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        roc_ax.plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(labels, scores)
        pr_ax.plot(recall, precision, label=name)
        flagged = scores >= threshold
        y = labels.astype(bool)
        roc_ax.scatter([flagged[~y].mean()], [flagged[y].mean()], marker="o")
        pr_ax.scatter([flagged[y].mean()], [y[flagged].mean() if flagged.any() else 0.0], marker="o")
    roc_ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    roc_ax.set(xlabel="false positive rate (ordinary flagged)", ylabel="recall", title="ROC (dot: threshold)")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall (dot: threshold)")
    roc_ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / PLOT_FILES[0]))

    fig, ax = plt.subplots(figsize=(5, 4.2))
    edges = np.linspace(0, 1, _BINS + 1)
    for name, (scores, labels) in sets.items():
        which = np.clip(np.digitize(scores, edges) - 1, 0, _BINS - 1)
        mean_score = [scores[which == b].mean() for b in range(_BINS) if np.any(which == b)]
        observed = [labels[which == b].mean() for b in range(_BINS) if np.any(which == b)]
        ax.plot(mean_score, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlabel="mean calibrated score in bin", ylabel="share that is crisis", title="reliability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / PLOT_FILES[1]))

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4.2), squeeze=False)
    bins = np.logspace(-6, 0, 40)
    for ax, (name, (scores, labels)) in zip(axes[0], sets.items(), strict=True):
        y = labels.astype(bool)
        clipped = np.clip(scores, 1e-6, 1.0)
        ax.hist(clipped[~y], bins=bins, alpha=0.6, density=True, label=f"ordinary ({int((~y).sum())})")
        ax.hist(clipped[y], bins=bins, alpha=0.6, density=True, label=f"crisis ({int(y.sum())})")
        ax.axvline(threshold, color="black", linewidth=1)
        ax.set(xscale="log", xlabel="score (log scale; line: threshold)", ylabel="density", title=name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, out / PLOT_FILES[2]))
    return paths


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=90)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
