"""Closing conversations in the scorer: at a close event or when idle (the sweep), the review decision (the sampling
policy, pipeline/sampling.py) and the review request with the turns so far, bounded to the record size
(pipeline/review_bounds.py); the candidate in shadow's disagreements raise the sampling."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka_io import RECORD_ATTEMPTS, RecordProducer, record_caused
from pipeline.batch import Batch
from pipeline.collaborators import Shadow
from pipeline.metrics import ScorerMetrics
from pipeline.review_bounds import bounded_record
from pipeline.sampling import SamplingPolicy
from pipeline.turn_rules import language_label
from vigil_core.clock import utcnow
from vigil_core.contracts import ReviewRequest, ReviewTurn
from vigil_core.conversations import ConversationState, ConversationStore, TurnUpdate, conversation_language
from vigil_core.model_record import ShadowStore
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["Closing", "SWEEP_LOCK_SHARE"]

log = logging.getLogger(__name__)

# The idle sweep's lock is held for this share of the sweep interval: long enough that two replicas never
# sweep in the same interval, short enough that it has expired when the next round starts, so a replica that
# died holding it costs one round, not every round after.
SWEEP_LOCK_SHARE = 0.9


class Closing:
    """The Scorer's closing and idle sweep (a part of `pipeline.scorer.Scorer`, kept apart to be read alone)."""

    settings: Settings
    metrics: ScorerMetrics
    store: ConversationStore
    producer: RecordProducer
    policy: SamplingPolicy
    replay: bool
    instance: str
    shadow: Shadow | None
    _replay_shadow: str
    _shadows: ShadowStore
    _last_sweep: float
    _sweep_failures: dict[str, int]

    def _turns_so_far(self, cid: str, state: ConversationState, update: TurnUpdate) -> list[dict[str, Any]]:
        stored = {f"{t['turn']:08d}:{t['role']}": t for t in self.store.turns(cid)} if state.exists else {}
        stored.update(update.turns)
        return [stored[k] for k in sorted(stored)]

    @staticmethod
    def _language(state: ConversationState, update: TurnUpdate | None) -> str | None:
        """The conversation's language from its user turns' votes so far (stored and in this batch)."""
        return conversation_language({**state.languages, **(update.languages if update is not None else {})})

    def _review(
        self, cid: str, reason: str, pi: float, max_score: float, first_flagged: int | None,
        turns: list[dict[str, Any]], language: str | None = None, anchor: int | None = None,
    ) -> OutRecord:
        """The review request; a long conversation is bounded around its first flagged turn, else `anchor` (the turn
        that sent it to review: a warning sign), else its highest-scored user turn."""
        flagged_turn = first_flagged if first_flagged is not None and first_flagged >= 0 else None
        requested_at = utcnow()

        def serialise(kept: list[dict[str, Any]], omitted: int) -> bytes:
            return ReviewRequest(
                review_id=f"{cid}:{reason}"[:128], conversation_id=cid, reason=reason, pi=pi,  # type: ignore[arg-type]
                max_score=min(1.0, max(0.0, max_score)), first_flagged_turn=flagged_turn,
                turns=[ReviewTurn(**t) for t in kept], requested_at=requested_at, omitted_turns=omitted,
                language=language,
            ).to_bytes()

        record, omitted = bounded_record(turns, flagged_turn if flagged_turn is not None else anchor,
                                         self.settings.review_max_bytes, serialise)
        if omitted:
            self.metrics.review_truncated.inc()
            log.warning("review request for a conversation bounded: %d of %d turns omitted", omitted, len(turns))
        return OutRecord(self.settings.topic_review, cid, record)

    def _close(self, cid: str, states: dict[str, ConversationState], batch: Batch, how: str,
               disagreeing: frozenset[str] = frozenset()) -> None:
        state = states.get(cid) or ConversationState(cid, exists=False)
        update = batch.updates.get(cid)
        if not state.exists and update is None:
            return  # nothing was ever scored for it
        if state.closed and update is None:
            return  # already closed and decided: a replayed close changes nothing
        max_score = max(state.max_score if state.exists else 0.0, (update.max_score or 0.0) if update else 0.0)
        flagged = state.flagged or (update is not None and update.first_flagged_turn >= 0)
        backup = state.backup or (update is not None and update.backup)
        language = self._language(state, update)
        unvalidated = language is not None and language not in self.settings.validated
        signs = [t for t in (state.warning_sign_turn, update.warning_sign_turn if update else -1)
                 if t is not None and t >= 0]
        warning_sign = bool(signs)
        decision = self.policy.decide(cid, max_score, flagged, backup, disagreement=cid in disagreeing,
                                      unvalidated_language=unvalidated, warning_sign=warning_sign)
        if unvalidated:
            self.metrics.closed_languages.labels(language_label(language or "")).inc()
        review = decision.reason if decision.selected else "not_sampled"
        if flagged:
            review = "flagged"
        elif decision.selected:
            turns = self._turns_so_far(cid, state, update or TurnUpdate(cid))
            anchor = min(signs) if decision.reason == "warning_sign" else None
            batch.outputs.append(self._review(cid, decision.reason, decision.pi, max_score, None, turns, language,
                                              anchor))
            self.metrics.sampled.labels(decision.reason).inc()
        batch.closes.append((cid, decision.pi, review))
        self.metrics.closed.labels(how).inc()

    def _disagreeing(self, cids: list[str]) -> frozenset[str]:
        """Of the conversations about to close, those the candidate in shadow flagged (their review sampling rises
        when the champion did not; `SamplingPolicy.decide`): one read for all of them, once the shadow has
        finished its queued work (bounded by the model timeout).

        A replay runs no shadow: it reads the shadow scores `vigil replay` restored, of the candidate the live
        record names, so a close decides as it did (when that candidate is the one that was in shadow then)."""
        version = self.shadow.version if self.shadow is not None else self._replay_shadow
        if not cids or not version:
            return frozenset()
        if self.shadow is not None:
            self.shadow.drain(self.settings.model_timeout_s)
        readings = self._shadows.read_many(cids, version)
        return frozenset(cid for cid, r in readings.items() if r.flagged and not r.skipped)

    def _maybe_sweep(self) -> None:
        s = self.settings
        now = time.monotonic()
        if now - self._last_sweep < s.sweep_interval_s:
            return
        self._last_sweep = now
        if not self.store.win_sweep(self.instance, s.sweep_interval_s * SWEEP_LOCK_SHARE):
            return
        idle = self.store.idle(before=time.time() - s.conversation_idle_s)
        if not idle:
            return
        try:
            self._sweep(idle)
        except Exception as exc:
            if not record_caused(exc):
                raise
            # One conversation's state (or its review request) may be the cause: close them one at a time.
            log.warning("idle sweep failed (%s); closing its conversations one at a time", type(exc).__name__)
            for cid in idle:
                try:
                    self._sweep([cid])
                except Exception as one:
                    if not record_caused(one):
                        raise
                    self._sweep_failed(cid, one)

    def _sweep(self, idle: list[str]) -> None:
        batch = Batch()
        states = self.store.read_many(idle)
        disagreeing = self._disagreeing([cid for cid in idle if states[cid].exists])
        expired = []
        for cid in idle:
            if states[cid].exists:
                self._close(cid, states, batch, how="idle", disagreeing=disagreeing)
            else:
                expired.append((cid, 0.0, ""))  # expired prediction: it only leaves the idle set
        if not self.replay:
            self.producer.send_all(batch.outputs)
        self.store.close_many(expired + batch.closes)

    def _sweep_failed(self, cid: str, exc: BaseException) -> None:
        failures = self._sweep_failures[cid] = self._sweep_failures.get(cid, 0) + 1
        if failures < RECORD_ATTEMPTS:
            return
        # Closed without a review decision, so the sweep moves on; its turns were scored and a flagged one
        # already had its review request when it was flagged.
        log.error("conversation closed by the idle sweep without a review decision after %d failures: %s",
                  failures, type(exc).__name__)
        self.store.close_many([(cid, self.settings.pi_floor, "failed")])
        self.metrics.closed.labels("failed").inc()
        del self._sweep_failures[cid]
