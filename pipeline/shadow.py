"""A candidate model scored in shadow: off the critical path, never flagging, written for comparison.

The scorer hands each batch's user turns to `ShadowScorer.submit` after it has started the champion on them;
the candidate scores them on its own thread, with its own conversation context (the float16 embeddings of the
conversation's earlier user turns it scored, kept in memory; after a restart, the earlier turns' texts from Redis,
embedded again), publishes `safety.shadow_score/1` records to `safety.scores.shadow` and writes each turn's score
to `shadow:{conversation_id}` (idempotent: a replayed turn writes the same field). Nothing waits for it, except a
conversation's close, whose review sampling asks whether the two versions disagree (`drain`).

When the CPU cannot carry both models, `share` < 1 shadows a hash-chosen share of conversations (the same ones on
every replica and replay). When the candidate falls `queue_batches` batches behind, further batches are not
scored by it; their conversations are marked `skipped` and left out of the comparison, and the champion never
slows down for its shadow beyond the CPU they share.

The shadow's work is at most once: a scorer that dies with shadow work queued loses it (the champion's offsets do
not wait for the shadow). Its conversations then hold fewer candidate scores, which can only lower the candidate's
recall in a comparison: the error goes against promotion, never for it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from collections import OrderedDict, deque
from typing import Any

import numpy as np

from kafka_io import RecordProducer
from models.backup import ScorerPhrases
from pipeline.sampling import uniform_from_id
from vigil_core.contracts import ConversationMessage, ShadowScore, utcnow
from vigil_core.conversations import ConversationStore
from vigil_core.model_record import ShadowStore
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["ShadowScorer", "SHADOW_SALT"]

log = logging.getLogger(__name__)

SHADOW_SALT = "vigil-shadow-v1"
_KEEP_CONVERSATIONS = 50_000  # conversations whose candidate embeddings stay in memory


SHADOW_NICE = 19  # the lowest CPU priority: the shadow runs on what the champion leaves


def _lower_priority() -> None:
    """Give this thread (and the threads it starts) the lowest CPU priority: on a busy machine the champion keeps
    the CPU and the shadow falls behind (and skips), instead of slowing live scoring. Linux sets nice per thread."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: the share alone bounds the cost
        log.warning("shadow thread priority not lowered: %s", exc)


class ShadowScorer:
    """Scores user turns with a candidate on a thread of its own (see the module docstring)."""

    def __init__(self, settings: Settings, classifier: Any, version: str, share: float, redis_client: Any,
                 metrics: Any, producer: Any = None) -> None:
        self.settings = settings
        self.classifier = classifier
        self.version = version
        self.share = float(share)
        self.threshold = float(classifier.threshold)
        self.metrics = metrics
        self.shadows = ShadowStore(redis_client, settings.redis_prefix, settings.label_wait_s)
        self.turns = ConversationStore(redis_client, settings.redis_prefix, settings.label_wait_s)
        self.producer = producer if producer is not None else RecordProducer(settings)
        self.phrases = ScorerPhrases()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-shadow",
                                                           initializer=_lower_priority)
        self._pending: deque[concurrent.futures.Future[None]] = deque()
        self._history: OrderedDict[str, dict[int, np.ndarray]] = OrderedDict()

    def chosen(self, conversation_id: str) -> bool:
        """Whether this conversation is shadowed (a hash of its id, the same everywhere)."""
        return self.share >= 1.0 or uniform_from_id(conversation_id, SHADOW_SALT) < self.share

    def submit(self, user: list[ConversationMessage], champion_version: str) -> None:
        """Queue these user turns (those of chosen conversations) for the candidate; never blocks on it."""
        turns = [m for m in user if self.chosen(m.conversation_id)]
        if not turns:
            return
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # raises nothing: _run logs its own failures
        if len(self._pending) >= self.settings.shadow_queue_batches:
            self._skip(turns)
            return
        self._pending.append(self._pool.submit(self._run, turns, champion_version))

    def drain(self, timeout_s: float) -> bool:
        """Wait for the queued work (at most `timeout_s`); False if some is still running."""
        pending = list(self._pending)
        if not pending:
            return True
        _, not_done = concurrent.futures.wait(pending, timeout=timeout_s)
        return not not_done

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish queued work (bounded) and stop."""
        self.drain(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- on the shadow thread -------------------------------------------------------------------------
    def _run(self, turns: list[ConversationMessage], champion_version: str) -> None:
        try:
            self._score(turns, champion_version)
        except Exception as exc:  # noqa: BLE001 - the candidate's failure must never touch live scoring
            log.warning("shadow scoring of %d turns failed: %s", len(turns), type(exc).__name__)
            self._skip(turns)

    def _skip(self, turns: list[ConversationMessage]) -> None:
        """Count turns the candidate did not score and mark their conversations: they leave the comparison."""
        self.metrics.shadow_skipped.inc(len(turns))
        try:
            self.shadows.write(self.version, self.threshold, [], sorted({m.conversation_id for m in turns}))
        except Exception as exc:  # noqa: BLE001 - the mark is for the comparison; scoring goes on
            log.warning("shadow skip mark not written: %s", type(exc).__name__)

    def _histories(self, turns: list[ConversationMessage]) -> list[list[Any]] | None:
        keep = int(getattr(self.classifier.info, "context_turns", 1)) - 1 if self.classifier.uses_context else 0
        if keep <= 0:
            return None
        missing = sorted({m.conversation_id for m in turns if m.conversation_id not in self._history})
        for cid in missing:  # begun before this shadow (or this process) started: embed the earlier turns again
            first = min(m.turn for m in turns if m.conversation_id == cid)
            earlier = [t for t in self.turns.turns(cid) if t["role"] == "user" and t["turn"] < first][-keep:]
            known: dict[int, np.ndarray] = {}
            if earlier:
                _, emb = self.classifier.embed([t["text"] for t in earlier])
                if emb is not None:
                    known = {t["turn"]: e for t, e in zip(earlier, emb, strict=True)}
            self._history[cid] = known
        in_batch: dict[str, dict[int, int]] = {}
        for i, m in enumerate(turns):
            in_batch.setdefault(m.conversation_id, {}).setdefault(m.turn, i)
        histories = []
        for m in turns:
            earlier_turns: dict[int, Any] = {t: e for t, e in self._history[m.conversation_id].items() if t < m.turn}
            earlier_turns.update({t: i for t, i in in_batch[m.conversation_id].items() if t < m.turn})
            histories.append([earlier_turns[t] for t in sorted(earlier_turns)[-keep:]])
        return histories

    def _score(self, turns: list[ConversationMessage], champion_version: str) -> None:
        histories = self._histories(turns)
        out = self.classifier.score_turns([m.text for m in turns], histories)
        scores = np.clip(np.asarray(out.scores, dtype=np.float64), 0.0, 1.0)
        if out.embeddings is not None:
            for m, e in zip(turns, out.embeddings, strict=True):
                self._history.setdefault(m.conversation_id, {})[m.turn] = e
                self._history.move_to_end(m.conversation_id)
            while len(self._history) > _KEEP_CONVERSATIONS:
                self._history.popitem(last=False)
        # flagged as the champion flags: its threshold, or a phrase of imminent risk or an explicit one (the lexicon's
        # strong tier): not the model's to miss
        flags = [bool(s >= self.threshold) or self.phrases.search(m.text) for m, s in zip(turns, scores, strict=True)]
        now = utcnow()
        records = [OutRecord(self.settings.topic_scores_shadow, m.conversation_id, ShadowScore(
            event_id=m.event_id, conversation_id=m.conversation_id, turn=m.turn, score=float(s), flagged=f,
            threshold=self.threshold, model_version=self.version, champion_version=champion_version,
            scored_at=now).to_bytes()) for m, s, f in zip(turns, scores, flags, strict=True)]
        self.producer.send_all(records)
        self.shadows.write(self.version, self.threshold, [(m.conversation_id, m.turn, float(s), f)
                                                          for m, s, f in zip(turns, scores, flags, strict=True)])
        self.metrics.shadow_scored.inc(len(turns))
