"""The user turns of a scorer's batch: each turn's context from earlier turns, its scores (the crisis model, and the
multilingual model for turns in its languages), the per-turn rules (pipeline/turn_rules.py) and what they produce:
a score record per turn, the conversation's state update, its first review request and its urgent case."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from models.backup import ImminentPhrases, LanguageLexicons, StrongPhrases, WarningSigns
from models.language import LanguageIdentifier
from models.multilingual import MultilingualModel
from models.resilient import PendingScores
from pipeline.batch import Batch, Parsed
from pipeline.collaborators import ReplyModel, TurnModel
from pipeline.metrics import ScorerMetrics
from pipeline.turn_rules import flag_reason, language_label, review_due, urgent_reason
from vigil_core.cases import UrgentCase
from vigil_core.clock import utcnow
from vigil_core.contracts import ConversationMessage, SafetyScore
from vigil_core.conversations import ConversationState, ConversationStore, TurnUpdate
from vigil_core.records import OutRecord
from vigil_core.settings import Settings

__all__ = ["TurnScoring", "LEXICON_TIERS"]

log = logging.getLogger(__name__)

# The other languages' lexicon tiers that flag a turn the model cannot read: all of them (a medium phrase, "no puedo
# más", is weak evidence in English text the model reads, and the only evidence in text it cannot).
LEXICON_TIERS = ("imminent", "strong", "medium")


class TurnScoring:
    """The Scorer's user-turn scoring (a part of `pipeline.scorer.Scorer`, kept apart to be read alone)."""

    settings: Settings
    metrics: ScorerMetrics
    store: ConversationStore
    model: TurnModel
    threshold: float
    urgent_threshold: float
    imminent: ImminentPhrases
    strong: StrongPhrases
    warning_signs: WarningSigns
    languages: LanguageIdentifier
    lexicons: LanguageLexicons
    multilingual: MultilingualModel | None
    response_model: ReplyModel | None
    _waiting: Batch | None
    _scored_since_beat: int
    _backup_since_beat: int

    if TYPE_CHECKING:  # the other parts of the Scorer this one calls (pipeline/closing.py, pipeline/replies.py)
        def _turns_so_far(self, cid: str, state: ConversationState, update: TurnUpdate) -> list[dict[str, Any]]: ...

        def _review(self, cid: str, reason: str, pi: float, max_score: float, first_flagged: int | None,
                    turns: list[dict[str, Any]], language: str | None = None,
                    anchor: int | None = None) -> OutRecord: ...

        def _score_replies(self, parsed: Parsed, states: dict[str, ConversationState], batch: Batch) -> None: ...

        @staticmethod
        def _language(state: ConversationState, update: TurnUpdate | None) -> str | None: ...

    def _histories(self, user: list[ConversationMessage]) -> list[list[Any]] | None:
        """Each user turn's context: the embeddings of its conversation's previous user turns (by turn number),
        from Redis, from the batch still waiting to be written, or (as an index) from this batch.

        Every source holds the same float16 embedding of a turn, so a replayed turn, whichever batch it comes
        in, gets the context, and so the score, it had. A turn the backup scorer scored has no embedding and
        is left out of later contexts.
        """
        keep = self.model.context_turns - 1
        if keep <= 0 or not user:
            return None
        stored = self.store.embeddings(sorted({m.conversation_id for m in user}))
        if self._waiting is not None:
            for cid, update in self._waiting.updates.items():
                if cid in stored and update.embeddings:
                    stored[cid] = {**stored[cid], **update.embeddings}
        in_batch: dict[str, dict[int, int]] = {}
        for i, m in enumerate(user):
            in_batch.setdefault(m.conversation_id, {}).setdefault(m.turn, i)
        histories: list[list[Any]] = []
        for m in user:
            earlier: dict[int, Any] = {t: np.frombuffer(e, dtype=np.float16)
                                       for t, e in stored.get(m.conversation_id, {}).items() if t < m.turn}
            earlier.update({t: i for t, i in in_batch[m.conversation_id].items() if t < m.turn})
            histories.append([earlier[t] for t in sorted(earlier)[-keep:]])
        return histories

    def _score_messages(
        self, parsed: Parsed, states: dict[str, ConversationState], batch: Batch, pending_scores: PendingScores,
    ) -> None:
        s = self.settings
        user = parsed.user
        scored = pending_scores.result()
        self.metrics.scoring_seconds.observe(time.perf_counter() - pending_scores.started)
        if scored.backup:
            self.metrics.backup.inc(len(user))
            self._backup_since_beat += len(user)
        self._scored_since_beat += len(user)
        score_of = {m.event_id: float(v) for m, v in zip(user, scored.scores, strict=True)}
        embedding_of = {}
        if scored.embeddings is not None:
            embedding_of = {m.event_id: e.astype(np.float16).tobytes()
                            for m, e in zip(user, scored.embeddings, strict=True)}
        language_of = dict(zip((m.event_id for m in user), self.languages.identify([m.text for m in user]),
                               strict=True))
        multilingual_of = self._multilingual(user, language_of)
        now = utcnow()
        for m in parsed.messages:
            u = batch.updates.setdefault(m.conversation_id, TurnUpdate(m.conversation_id))
            u.last_activity = max(u.last_activity, m.ts.timestamp())
            turn: dict[str, Any] = {"turn": m.turn, "role": m.role, "text": m.text,
                                    "ts": m.ts.isoformat().replace("+00:00", "Z")}
            if m.role != "user":
                u.turns[f"{m.turn:08d}:{m.role}"] = turn
                self.metrics.events.labels("message", "context").inc()
                continue
            score = score_of[m.event_id]
            if m.event_id in embedding_of:
                u.embeddings[m.turn] = embedding_of[m.event_id]
            language = language_of[m.event_id]
            turn["language"] = language.language
            u.languages[m.turn] = f"{language.language} {language.weight!r}"
            self.metrics.turn_languages.labels(language_label(language.language)).inc()
            urgent_why = urgent_reason(score, self.urgent_threshold, partial(self.imminent.search, m.text))
            # a turn not read as a validated language (another language, or too short to tell) with a crisis
            # phrase of another supported language, which the model (English only) scores near zero
            phrase = language.language not in self.settings.validated and self.lexicons.find(m.text, LEXICON_TIERS)
            multilingual = multilingual_of.get(m.event_id)
            why = flag_reason(score, self.threshold, urgent_why, phrase, multilingual,
                              None if self.multilingual is None else self.multilingual.threshold,
                              partial(self.strong.search, m.text))
            flagged = bool(why)
            if why and why != "score":  # the clinician sees why a turn the model scored low is flagged
                turn["flagged_by"] = why
            if why == "strong phrase":  # the model scored an explicit statement below its threshold
                self.metrics.strong_phrase.inc()
            if not flagged and (sign := self.warning_signs.find(m.text)):
                turn["warning_sign"] = sign  # the clinician sees which sign sent the conversation to review
                if u.warning_sign_turn < 0 or m.turn < u.warning_sign_turn:
                    u.warning_sign_turn = m.turn
            if urgent_why and (u.urgent_turn < 0 or m.turn < u.urgent_turn):
                u.urgent_turn = m.turn
                u.urgent_score, u.urgent_why = score, urgent_why
            turn["score"] = score
            if multilingual is not None:
                turn["multilingual_score"] = multilingual
            u.turns[f"{m.turn:08d}:{m.role}"] = turn
            u.max_score = score if u.max_score is None else max(u.max_score, score)
            u.backup = u.backup or scored.backup
            u.model_version = scored.model_version
            u.threshold = self.threshold
            if flagged and (u.first_flagged_turn < 0 or m.turn < u.first_flagged_turn):
                u.first_flagged_turn = m.turn
            batch.outputs.append(OutRecord(s.topic_scores, m.conversation_id, SafetyScore(
                event_id=m.event_id, conversation_id=m.conversation_id, turn=m.turn, score=score, flagged=flagged,
                threshold=self.threshold, model_version=scored.model_version, scored_at=now, backup=scored.backup,
                language=language.language, multilingual_score=multilingual,
            ).to_bytes()))
            self.metrics.events.labels("message", "scored").inc()
        # The first time a conversation is flagged: one review request with the turns so far; the first time it
        # is urgent: an urgent one (it replaces the flagged item at the top of the queue) and the urgent case.
        for cid, u in batch.updates.items():
            state = states.get(cid) or ConversationState(cid, exists=False)
            newly_urgent, newly_flagged = review_due(state, u)
            if newly_urgent or newly_flagged:
                turns = self._turns_so_far(cid, state, u)
                max_score = max(state.max_score if state.exists else 0.0, u.max_score or 0.0)
                first = u.first_flagged_turn if newly_flagged else state.first_flagged_turn
                reason = "urgent" if newly_urgent else "flagged"
                batch.outputs.append(self._review(cid, reason, 1.0, max_score, first, turns,
                                                  self._language(state, u)))
                u.review = "flagged"
                if newly_flagged:
                    self.metrics.flagged.inc()
            if newly_urgent:
                batch.urgent.append(UrgentCase(cid, u.urgent_turn, u.urgent_score, u.urgent_why))
                self.metrics.urgent.inc()
        self._score_replies(parsed, states, batch)

    def _multilingual(self, user: list[ConversationMessage], language_of: dict[str, Any]) -> dict[str, float]:
        """The multilingual model's P(crisis) of the user turns identified as one of its languages (not validated
        for the crisis model). If it fails, those turns keep the language routing and the lexicons, and the
        failure is counted and logged (never a crash of the batch)."""
        model = self.multilingual
        if model is None:
            return {}
        chosen = [m for m in user if language_of[m.event_id].language not in self.settings.validated
                  and model.reads(language_of[m.event_id].language)]
        if not chosen:
            return {}
        try:
            scores = model.predict([m.text for m in chosen])
        except Exception as exc:  # noqa: BLE001 - a broken encoder must not stop the scorer; the routing still holds
            log.error("multilingual model failed on %d turns: %s", len(chosen), type(exc).__name__)
            for m in chosen:
                self.metrics.multilingual.labels(language_of[m.event_id].language, "failed").inc()
            return {}
        out: dict[str, float] = {}
        for m, p in zip(chosen, scores, strict=True):
            out[m.event_id] = float(p)
            flagged = p >= model.threshold
            self.metrics.multilingual.labels(language_of[m.event_id].language,
                                             "flagged" if flagged else "scored").inc()
        return out
