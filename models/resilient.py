"""The model with its safety net: a batch the model fails on (raises or times out) is scored by the
backup lexicon scorer and marked `backup`, never passed as safe."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.backup import BackupScorer

__all__ = ["ResilientScorer", "ScoredBatch", "Predictor", "PendingScores"]

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """Anything with calibrated `predict`, a `threshold` and a `model_version` (CrisisClassifier).

    A predictor that also has `score_turns(texts, histories)` (CrisisClassifier) scores each turn with its
    conversation's earlier user turns as context; `context_turns` says how many turns its context holds.
    """

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
    embeddings: np.ndarray | None = None  # float16 per text, the history of later turns (None: not kept)


class ResilientScorer:
    """Scores a batch with the model within `timeout_s`, else with the backup scorer."""

    def __init__(self, model: Predictor | None, threshold: float, timeout_s: float = 10.0) -> None:
        self.model = model
        self.threshold = threshold
        self.backup = BackupScorer(threshold)
        self._timeout = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-model")
        self._busy: concurrent.futures.Future[Any] | None = None

    @property
    def context_turns(self) -> int:
        """User turns in a turn's context, itself included (1: the model scores each turn alone)."""
        if self.model is None or not getattr(self.model, "uses_context", False):
            return 1
        return int(self.model.info.context_turns)  # type: ignore[attr-defined]

    def score(self, texts: Sequence[str], histories: Sequence[Sequence[Any]] | None = None) -> ScoredBatch:
        """Scores for `texts`; `backup` is True when the lexicon produced them."""
        return self.submit(texts, histories).result()

    def submit(self, texts: Sequence[str], histories: Sequence[Sequence[Any]] | None = None) -> PendingScores:
        """Start scoring `texts` (with their conversations' earlier user turns, see
        `CrisisClassifier.score_turns`) on the model's thread; `.result()` waits (at most the timeout from now)."""
        started = time.perf_counter()
        future = None
        if texts and self.model is not None and (self._busy is None or self._busy.done()):
            future = self._pool.submit(self._run_model, list(texts), histories)
        return PendingScores(self, list(texts), future, started)

    def _run_model(self, texts: list[str], histories: Sequence[Sequence[Any]] | None) -> Any:
        if self.model is not None and hasattr(self.model, "score_turns"):
            return self.model.score_turns(texts, histories)
        return self.model.predict(texts) if self.model is not None else None

    def _result(
        self, texts: list[str], future: concurrent.futures.Future[Any] | None, started: float
    ) -> ScoredBatch:
        if not texts:
            return ScoredBatch(np.zeros(0), False, self.model.model_version if self.model else "none")
        error = "no model loaded"
        if future is not None and self.model is not None:
            try:
                remaining = max(0.0, self._timeout - (time.perf_counter() - started))
                out = future.result(timeout=remaining)
                embeddings = getattr(out, "embeddings", None)
                scores = np.asarray(getattr(out, "scores", out), dtype=np.float64)
                if scores.shape != (len(texts),) or not np.all(np.isfinite(scores)):
                    raise ValueError(f"model returned {scores.shape} non-finite or misshapen scores")
                return ScoredBatch(np.clip(scores, 0.0, 1.0), False, self.model.model_version, embeddings=embeddings)
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


class PendingScores:
    """Scores being computed on the model's thread (see `ResilientScorer.submit`)."""

    def __init__(
        self, owner: ResilientScorer, texts: list[str], future: concurrent.futures.Future[Any] | None,
        started: float,
    ) -> None:
        self._owner = owner
        self._texts = texts
        self._future = future
        self.started = started  # time.perf_counter() at submission

    def result(self) -> ScoredBatch:
        """The model's scores, or the backup scorer's when the model failed, timed out or was busy."""
        return self._owner._result(self._texts, self._future, self.started)
