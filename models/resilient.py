"""The model with its safety net: a batch the model fails on (raises or times out) is scored by the
backup lexicon scorer and marked `backup`, never passed as safe."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.backup import BackupScorer

__all__ = ["ResilientScorer", "ScoredBatch", "Predictor"]

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """Anything with calibrated `predict`, a `threshold` and a `model_version` (CrisisClassifier)."""

    threshold: float
    model_version: str

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated crisis probabilities."""
        ...


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """Scores of one batch and who produced them."""

    scores: np.ndarray
    backup: bool
    model_version: str
    error: str = ""


class ResilientScorer:
    """Scores a batch with the model within `timeout_s`, else with the backup scorer."""

    def __init__(self, model: Predictor | None, threshold: float, timeout_s: float = 10.0) -> None:
        self.model = model
        self.threshold = threshold
        self.backup = BackupScorer(threshold)
        self._timeout = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-model")
        self._busy: concurrent.futures.Future[np.ndarray] | None = None

    def score(self, texts: Sequence[str]) -> ScoredBatch:
        """Scores for `texts`; `backup` is True when the lexicon produced them."""
        if not texts:
            return ScoredBatch(np.zeros(0), False, self.model.model_version if self.model else "none")
        error = "no model loaded"
        if self.model is not None and (self._busy is None or self._busy.done()):
            future = self._pool.submit(self.model.predict, list(texts))
            try:
                scores = np.asarray(future.result(timeout=self._timeout), dtype=np.float64)
                if scores.shape != (len(texts),) or not np.all(np.isfinite(scores)):
                    raise ValueError(f"model returned {scores.shape} non-finite or misshapen scores")
                return ScoredBatch(np.clip(scores, 0.0, 1.0), False, self.model.model_version)
            except concurrent.futures.TimeoutError:
                # The stuck call keeps its thread; later batches go to the backup until it returns.
                self._busy = future
                error = f"model timed out after {self._timeout:g} s"
            except Exception as exc:  # noqa: BLE001 - any model failure falls back to the backup scorer
                error = f"model failed: {type(exc).__name__}"
        elif self.model is not None:
            error = "model still busy with a timed-out batch"
        log.warning("backup scorer used for %d texts: %s", len(texts), error)
        return ScoredBatch(self.backup.predict(texts), True, self.backup.model_version, error)

    def close(self) -> None:
        """Stop the worker thread (does not wait for a stuck model call)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
