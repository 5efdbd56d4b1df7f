"""Calibration and the operating point of a trained model: the window temperature, Platt scaling, the
threshold for the target recall on validation, the test report and the model card.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import write_artifact
from models.calibration import PlattCalibration
from models.classifier import CrisisClassifier
from models.head import window_logit
from models.training.augment import extra_heldout_reports
from models.training.dataset import Dataset, Progress, stderr_progress
from models.training.report import classification_report
from models.training.thresholds import threshold_for_recall
from models.training.train_config import TrainConfig

__all__ = ["WINDOW_TEMPERATURES", "choose_window_temperature", "calibrate"]


# Bounded at 1: a crisis window among n windows is never lowered by more than ln n in log-odds (a crisis sentence
# at the end of a 10-window message keeps at least a tenth of its odds). On the primary data's validation rows
# t = 2 ranked posts 0.2 points better; a missed crisis in a long message costs more than that.
WINDOW_TEMPERATURES = (0.0, 0.5, 1.0)


def choose_window_temperature(
    window_logits: np.ndarray, owners: np.ndarray, labels: np.ndarray
) -> tuple[float, dict[str, float]]:
    """The soft-maximum temperature over a text's windows with the best validation ROC-AUC (ties: the lower,
    closer to the highest window), at most 1 (see WINDOW_TEMPERATURES)."""
    from sklearn.metrics import roc_auc_score

    aucs = {t: float(roc_auc_score(labels, window_logit(window_logits, owners, len(labels), t)))
            for t in WINDOW_TEMPERATURES}
    best = max(WINDOW_TEMPERATURES, key=lambda t: (round(aucs[t], 4), -t))
    return best, {str(t): round(a, 4) for t, a in aucs.items()}


def calibrate(
    out: Path,
    data: Dataset,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: TrainConfig,
    split_file: Path | None,
    meta: dict[str, Any],
    progress: Progress = stderr_progress,
    cache_dir: Path | None = None,
    train_seconds: float | None = None,
    history: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Calibrate a trained model directory, choose its threshold on validation, evaluate it (torch and int8),
    and write `vigil_model.json` and MODEL_CARD.md. Used by `vigil train` and `vigil model calibrate`."""
    train_idx, val_idx, test_idx = splits
    # Calibrate and choose the threshold through the same path production uses (windows, fp16 weights).
    progress("scoring validation rows for calibration and threshold")
    val_texts = [data.texts[i] for i in val_idx]
    val_labels = data.labels[val_idx]
    clf = CrisisClassifier.load(out, backend="torch", threads=cfg.threads)
    val_windows, val_owners = clf.window_logits(val_texts)
    temperature, temperature_auc = choose_window_temperature(val_windows, val_owners, val_labels)
    progress(f"window soft-maximum temperature {temperature} (validation ROC-AUC {temperature_auc})")
    val_logits = window_logit(val_windows, val_owners, len(val_texts), temperature)
    calibration = PlattCalibration.fit(val_logits, val_labels)
    # The model directory holds the fitted aggregation and calibration before the int8 backend loads it; the
    # torch classifier, loaded before they existed, is given them too.
    meta.update(window_temperature=temperature, calibration=calibration.to_dict())
    write_artifact(out, meta)
    clf.info.window_temperature, clf.info.calibration = temperature, calibration
    val_probs = calibration(val_logits)
    threshold = threshold_for_recall(val_probs, val_labels, cfg.target_recall)

    # The int8 ONNX graph is re-validated on the same validation rows. The one operating threshold must
    # give the target recall with whichever backend serves, so it is the lower of the two backends'
    # thresholds; int8 becomes the default only if, at that threshold, its validation recall is within
    # one point of fp32's. Test rows decide nothing: they are only reported.
    onnx: CrisisClassifier | None = None
    onnx_val_probs: np.ndarray | None = None
    try:
        progress("exporting the int8 ONNX backend and scoring validation rows with it")
        onnx = CrisisClassifier.load(out, backend="onnx", threads=cfg.threads, cache_dir=cache_dir)
        onnx_val_probs = onnx.predict(val_texts)
        threshold = min(threshold, threshold_for_recall(onnx_val_probs, val_labels, cfg.target_recall))
    except Exception as exc:  # noqa: BLE001 - the torch model stands on its own
        progress(f"int8 ONNX backend unavailable: {exc}")
        onnx = None
    meta["threshold"] = threshold

    report: dict[str, Any] = {"validation": classification_report(val_probs, val_labels, threshold)}
    eval_idx = test_idx if len(test_idx) else val_idx
    eval_name = "test" if len(test_idx) else "validation"
    eval_texts = [data.texts[i] for i in eval_idx]
    progress(f"scoring {len(eval_idx)} {eval_name} rows (fp32 torch)")
    report[eval_name] = classification_report(clf.predict(eval_texts), data.labels[eval_idx], threshold)
    meta["onnx_recall_ok"] = False
    if onnx is not None and onnx_val_probs is not None:
        onnx_val = classification_report(onnx_val_probs, val_labels, threshold)
        progress(f"scoring {len(eval_idx)} {eval_name} rows (int8 ONNX)")
        onnx_eval = classification_report(onnx.predict(eval_texts), data.labels[eval_idx], threshold)
        report["onnx_int8"] = {"validation": onnx_val, eval_name: onnx_eval}
        meta["onnx_recall_ok"] = bool(onnx_val["recall"] >= report["validation"]["recall"] - 0.01)
    served = onnx if onnx is not None and meta["onnx_recall_ok"] else clf
    heldout = extra_heldout_reports(served, cfg.extra_train, threshold, progress)
    if heldout:
        report["extra_heldout"] = {"backend": served.backend.name, **heldout}
    meta.update(
        config={**meta.get("config", {}), **cfg.__dict__},
        history=history if history is not None else meta.get("history", []),
        train_seconds=round(train_seconds, 1) if train_seconds is not None else meta.get("train_seconds"),
        data={"path": data.path.name, "sha256": data.sha256,
              "rows": data.primary_rows, "crisis": int(data.labels[:data.primary_rows].sum()),
              "split_file": split_file.name if split_file else None,
              "split_sha256": hashlib.sha256(split_file.read_bytes()).hexdigest() if split_file else None,
              "train": int((train_idx < data.primary_rows).sum()), "validation": len(val_idx),
              "test": len(test_idx)},
        metrics=report,
        eval_split=eval_name,
    )
    write_artifact(out, meta)
    from models.training.card import write_model_card

    write_model_card(out, meta)
    progress(f"wrote {out} ({meta['model_version']}): {eval_name} ROC-AUC "
             f"{report[eval_name]['roc_auc']:.4f}, recall {report[eval_name]['recall']:.3f} at threshold "
             f"{threshold:.4f}")
    return meta
