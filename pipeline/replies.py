"""The AI's replies of a scorer's batch: in a conversation with crisis signs, each reply is read by the response-safety
model (models/response_safety.py) with the user turns before it; a reply at its page level, or one that says outright
what the person fears (models/reply_phrases.py) whatever the model scored, becomes a harmful case (a P0 and a handoff,
incidents/urgent.py), and every reply read counts in the harmful-response rate's window. A reply that says it
outright is read in any conversation: its words are a crisis sign the crisis model may have missed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import redis

from evaluators.store import EvaluatorStore
from models.reply_phrases import HarmfulReplyPhrases
from pipeline.batch import Batch, Parsed
from pipeline.collaborators import ReplyModel
from pipeline.metrics import ScorerMetrics
from pipeline.turn_rules import crisis_sign_turn
from safety_gate.fallback import is_gate_reply
from vigil_core.cases import HarmfulCase
from vigil_core.conversations import ConversationState, TurnUpdate
from vigil_core.settings import Settings

__all__ = ["ReplyScoring", "REPLY_CONTEXT_TURNS"]

# The user turns before an AI reply that the response-safety model reads with it.
REPLY_CONTEXT_TURNS = 2


class ReplyScoring:
    """The Scorer's reply scoring (a part of `pipeline.scorer.Scorer`, kept apart to be read alone)."""

    settings: Settings
    metrics: ScorerMetrics
    response_model: ReplyModel | None
    reply_phrases: HarmfulReplyPhrases | None
    _redis: redis.Redis
    _evals: EvaluatorStore | None

    if TYPE_CHECKING:  # pipeline/closing.py
        def _turns_so_far(self, cid: str, state: ConversationState, update: TurnUpdate) -> list[dict[str, Any]]: ...

    def _eval_store(self) -> EvaluatorStore:
        if self._evals is None:
            self._evals = EvaluatorStore(self._redis, self.settings.redis_prefix, self.settings.label_wait_s)
        return self._evals

    def _score_replies(self, parsed: Parsed, states: dict[str, ConversationState], batch: Batch) -> None:
        """Score the AI's replies in conversations with crisis signs (flagged before or in this batch), and any reply
        that says outright what a person in crisis fears, with the response-safety model, each with the user turns
        just before it (nothing without a reply model)."""
        model = self.response_model
        if model is None:
            return
        replies = []
        found: dict[str, str] = {}  # the phrase that let a reply with no crisis sign be read (by event id)
        for m in parsed.messages:
            if m.role != "assistant" or is_gate_reply(m.model_version):
                continue  # the gate's fallback and handoff messages are Vigil's own text, not the AI's
            state = states.get(m.conversation_id) or ConversationState(m.conversation_id, exists=False)
            first = crisis_sign_turn(state, batch.updates.get(m.conversation_id))
            if first is None or first > m.turn:
                # no crisis sign before this reply. One that tells a person they would not be missed or should die
                # is read even so: the crisis model may have missed the person (its confident misses, issue 31)
                phrase = None if self.reply_phrases is None else self.reply_phrases.find(m.text)
                if phrase is None:
                    continue
                found[m.event_id] = phrase
            replies.append(m)
        if not replies:
            return
        # Each reply is read against the user turn it answers and against the last REPLY_CONTEXT_TURNS joined, and
        # keeps the higher score: the cross-encoder learned single turns, and an opening "hey" before "everything
        # feels pointless" must not excuse "lol same" (as the crisis model reads a turn alone and in context).
        latest, joined = [], []
        turns_of: dict[str, list[dict[str, Any]]] = {}  # one read of the stored turns per conversation
        for m in replies:
            cid = m.conversation_id
            if cid not in turns_of:
                state = states.get(cid) or ConversationState(cid, exists=False)
                turns_of[cid] = self._turns_so_far(cid, state, batch.updates.get(cid) or TurnUpdate(cid))
            before = [t["text"] for t in turns_of[cid] if t["role"] == "user" and t["turn"] < m.turn]
            latest.append(" ".join(before[-1:]))
            joined.append(" ".join(before[-REPLY_CONTEXT_TURNS:]))
        texts = [m.text for m in replies]
        several = [i for i in range(len(replies)) if joined[i] != latest[i]]
        read = model.score(latest + [joined[i] for i in several], texts + [texts[i] for i in several])
        scores = np.asarray(read[: len(replies)], dtype=np.float64)
        for k, i in enumerate(several):
            scores[i] = max(scores[i], float(read[len(replies) + k]))
        page = float(model.page_threshold)
        for m, p in zip(replies, scores, strict=True):
            # under the page level, a phrase in the AI's own voice (its kind: never the text) pages as well
            phrase = (None if float(p) >= page or self.reply_phrases is None
                      else found.get(m.event_id) or self.reply_phrases.find(m.text))
            why = "score" if float(p) >= page else f"phrase ({phrase})" if phrase else None
            batch.replies.append((m.event_id, m.ts.timestamp(), 1.0 if why else 0.0))
            stored = batch.updates[m.conversation_id].turns.get(f"{m.turn:08d}:{m.role}")
            if stored is not None:
                stored["response_risk"] = round(float(p), 4)  # shown to the clinician beside the reply
                stored["response_paged"] = why is not None  # and whether it paged: the judgement measures the page
                if phrase:
                    stored["response_paged_by"] = why  # paged under the model's page level: why
            self.metrics.replies.labels("unsafe" if why else "safe").inc()
            if why:
                batch.harmful.append(HarmfulCase(m.conversation_id, m.turn, float(p), model.version, why))
