"""Loading the scorer's model with its backup (`vigil score` itself is wired in `vigil/score.py`)."""

from __future__ import annotations

import logging

from vigil_core.settings import Settings

__all__ = ["load_resilient_scorer"]

log = logging.getLogger(__name__)


def load_resilient_scorer(settings: Settings):  # type: ignore[no-untyped-def]
    """The configured classifier wrapped with the backup scorer; a model that fails to load still
    leaves the backup scorer running (and marks every score `backup`)."""
    from models.artifact import DEFAULT_MODEL_DIR, ModelInfo
    from models.classifier import CrisisClassifier
    from models.errors import ModelError
    from models.resilient import ResilientScorer

    try:
        clf = CrisisClassifier.load(
            settings.model_dir, backend=settings.model_backend, threads=settings.torch_threads,
            batch_size=settings.batch_size, threshold=settings.threshold, cache_dir=settings.cache_dir,
        )
        return ResilientScorer(clf, clf.threshold, timeout_s=settings.model_timeout_s)
    except ModelError as exc:
        log.error("model failed to load, scoring with the backup scorer only: %s", exc)
        threshold = settings.threshold or ModelInfo.read(settings.model_dir or DEFAULT_MODEL_DIR).threshold
        return ResilientScorer(None, threshold, timeout_s=settings.model_timeout_s)
