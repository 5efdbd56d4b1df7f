"""Following the live-model record: the scorer's champion and shadow candidate, switched between batches.

The record (`vigil_core.model_record`, changed by `vigil model promote|rollback|shadow`) is read once per
consume cycle: one HGET of its change counter. When it changed, the versions it names are loaded on a loader
thread (a load takes seconds, and the consume loop keeps scoring with what it has meanwhile); once loaded, the
scorer finishes the batch it holds (published, written, committed) and swaps, so every batch is scored by one
version and every score names it. Versions already loaded stay in memory (at most `KEEP_LOADED`), so a rollback
to the champion before is effective from the next batch.

A version this scorer cannot load (not in its model store, or broken) is not a reason to stop scoring: it keeps
the model it has, counts the failure (`vigil_scorer_model_load_failures`) and tries again at the next change.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vigil_core.model_record import DEFAULT_VERSION, LiveModels, ModelRecord
from vigil_core.settings import Settings

if TYPE_CHECKING:
    from models.classifier import CrisisClassifier

__all__ = ["LiveModelSwitch", "Switch", "load_version", "model_store", "champion_scorer"]

log = logging.getLogger(__name__)

KEEP_LOADED = 3


def model_store(settings: Settings) -> Any:
    """The configured model store."""
    from models.store import ModelStore, default_store_dir

    return ModelStore(settings.model_store or default_store_dir())


def load_version(settings: Settings, version: str, shadow: bool = False) -> Any:
    """A CrisisClassifier of a version: "default" is the configured model (`VIGIL_MODEL_DIR`, `VIGIL_THRESHOLD`),
    any other a model store version, scoring under its version id at its own threshold.

    A shadow candidate served by ONNX Runtime runs each row on its calling thread alone (one intra-op thread, no
    worker pool), so the shadow thread's lowered priority (pipeline/shadow.py) covers all of its work. (torch's
    thread count is one global setting: a torch-served shadow keeps the process's.)"""
    from models.artifact import DEFAULT_MODEL_DIR, ModelInfo
    from models.classifier import CrisisClassifier

    default = version == DEFAULT_VERSION
    path = (settings.model_dir or DEFAULT_MODEL_DIR) if default else model_store(settings).path(version)
    threads = settings.torch_threads
    if shadow:
        onnx = settings.model_backend == "onnx" or (settings.model_backend == "auto"
                                                     and ModelInfo.read(path).onnx_recall_ok)
        threads = 1 if onnx else 0
    if version == DEFAULT_VERSION:
        return CrisisClassifier.load(path, backend=settings.model_backend, threads=threads,
                                     batch_size=settings.batch_size, threshold=settings.threshold,
                                     cache_dir=settings.cache_dir)
    return CrisisClassifier.load(path, backend=settings.model_backend, threads=threads,
                                 batch_size=settings.batch_size, cache_dir=settings.cache_dir, version=version)


@dataclass(frozen=True)
class Switch:
    """What the scorer runs from now: the champion (None: it could not be loaded, keep the current one) and the
    shadow candidate (None: no shadow)."""

    record: LiveModels
    champion: CrisisClassifier | None
    shadow: CrisisClassifier | None


class LiveModelSwitch:
    """Loads what the record names, off the consume loop, and hands it over when ready (`poll`)."""

    def __init__(self, settings: Settings, record: ModelRecord, metrics: Any = None) -> None:
        self.settings = settings
        self.record = record
        self.metrics = metrics
        self.seen = -1  # the record version last handed over (or being loaded)
        self._loaded: OrderedDict[tuple[str, bool], Any] = OrderedDict()  # (version, as shadow) -> classifier
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-model-load")
        self._loading: concurrent.futures.Future[Switch] | None = None

    def _get(self, version: str, shadow: bool = False) -> Any:
        if (version, shadow) in self._loaded:
            self._loaded.move_to_end((version, shadow))
            return self._loaded[(version, shadow)]
        try:
            clf = load_version(self.settings, version, shadow=shadow)
        except Exception as exc:  # noqa: BLE001 - a version that cannot load leaves the scorer on what it has
            log.error("model version %s could not be loaded: %s: %s", version, type(exc).__name__, exc)
            if self.metrics is not None:
                self.metrics.model_load_failures.inc()
            return None
        self._loaded[(version, shadow)] = clf
        while len(self._loaded) > KEEP_LOADED:
            self._loaded.popitem(last=False)
        return clf

    def load(self, live: LiveModels | None = None, shadow: bool = True) -> Switch:
        """Load what the record names now (blocking): at start, before the first batch (`shadow=False`: the
        champion only, for a replay)."""
        live = live or self.record.read()
        switch = Switch(live, self._get(live.champion),
                        self._get(live.shadow, shadow=True) if live.shadow and shadow else None)
        self.seen = live.version
        return switch

    def poll(self) -> Switch | None:
        """A switch ready to apply, or None. Cheap when nothing changed (one Redis read)."""
        if self._loading is not None:
            if not self._loading.done():
                return None
            loading, self._loading = self._loading, None
            return loading.result()
        try:
            version = self.record.read_version()
        except Exception as exc:  # noqa: BLE001 - Redis trouble: the scorer's own Redis writes will say so
            log.warning("live model record unreadable: %s", type(exc).__name__)
            return None
        if version == self.seen:
            return None
        live = self.record.read()
        self.seen = live.version
        self._loading = self._pool.submit(self.load, live)
        return None

    def close(self) -> None:
        """Stop the loader thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def champion_scorer(settings: Settings, switch: LiveModelSwitch, shadow: bool = True) -> tuple[Any, Switch]:
    """The champion the record names, with its backup scorer (ResilientScorer), and the loaded switch; the
    configured model when the champion cannot be loaded here (logged, counted by the caller)."""
    from models.resilient import ResilientScorer
    from pipeline.commands import load_resilient_scorer

    start = switch.load(shadow=shadow)
    if start.champion is None:
        log.error("champion %s could not be loaded; scoring with the configured model", start.record.champion)
        return load_resilient_scorer(settings), start
    return ResilientScorer(start.champion, start.champion.threshold, timeout_s=settings.model_timeout_s), start
