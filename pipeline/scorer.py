"""`vigil score`: score every conversation turn from Kafka, lose nothing, survive crashes.

One cycle: poll a batch -> validate (bad records to the DLQ) -> score the user turns in one classifier
call (backup scorer if the model fails) -> publish scores, review requests and dead letters and wait for
the broker's acks -> write the idempotent Redis state -> commit offsets. A crash anywhere before the
commit replays the batch, and replaying changes nothing that was already done.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from evaluators.rules import HARMFUL_RULE
from models.backup import ImminentPhrases, LanguageLexicons
from models.language import LanguageIdentifier
from models.multilingual import MultilingualModel
from pipeline.kafka_io import (
    RECORD_ATTEMPTS,
    OutRecord,
    RecordProducer,
    consume,
    consumer_lag,
    dead_letter_record,
    ensure_topics,
    make_consumer,
    record_caused,
)
from pipeline.metrics import ScorerMetrics
from pipeline.review_bounds import bounded_record
from pipeline.sampling import SamplingPolicy
from safety_gate.fallback import is_gate_reply
from vigil_core.contracts import (
    ConversationClosed,
    ConversationFeedback,
    ConversationMessage,
    ReviewRequest,
    ReviewTurn,
    SafetyScore,
    dead_letter,
    parse_event,
    utcnow,
)
from vigil_core.conversations import ConversationState, ConversationStore, TurnUpdate, conversation_language
from vigil_core.errors import ContractError
from vigil_core.model_record import ShadowStore
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["Scorer", "EVENT_SCHEMAS", "UrgentCase", "HarmfulCase", "HARMFUL_RULE"]

# The other languages' lexicon tiers that flag a turn the model cannot read: all of them (a medium phrase, "no puedo
# más", is weak evidence in English text the model reads, and the only evidence in text it cannot).
LEXICON_TIERS = ("imminent", "strong", "medium")
# The user turns before an AI reply that the response-safety model reads with it.
REPLY_CONTEXT_TURNS = 2

log = logging.getLogger(__name__)

# The idle sweep's lock is held for this share of the sweep interval: long enough that two replicas never
# sweep in the same interval, short enough that it has expired when the next round starts, so a replica that
# died holding it costs one round, not every round after.
SWEEP_LOCK_SHARE = 0.9
EVENT_SCHEMAS = frozenset({"conversation.message/1", "conversation.feedback/1", "conversation.closed/1"})


@dataclass
class _Parsed:
    messages: list[ConversationMessage] = field(default_factory=list)
    closes: list[ConversationClosed] = field(default_factory=list)
    dead: list[OutRecord] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)

    @property
    def user(self) -> list[ConversationMessage]:
        """The user turns: the ones the model scores, in this order."""
        return [m for m in self.messages if m.role == "user"]


@dataclass
class _Batch:
    outputs: list[OutRecord] = field(default_factory=list)
    updates: dict[str, TurnUpdate] = field(default_factory=dict)
    closes: list[tuple[str, float, str]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    urgent: list[UrgentCase] = field(default_factory=list)
    harmful: list[HarmfulCase] = field(default_factory=list)
    replies: list[tuple[str, float, float]] = field(default_factory=list)  # (event_id, ts, 1.0 unsafe / 0.0)


@dataclass(frozen=True)
class UrgentCase:
    """A conversation that just crossed the urgent level: page a clinician, hand it to a human."""

    conversation_id: str
    turn: int
    score: float
    why: str  # "score" or "imminent phrase" (never the text)


@dataclass(frozen=True)
class HarmfulCase:
    """An AI reply judged unsafe (page level) in a conversation with crisis signs: P0 and handoff."""

    conversation_id: str
    turn: int
    score: float
    model_version: str


# Languages named in metric labels; any other is "other" (a label per fastText code would be 176 series).
_LABELLED_LANGUAGES = frozenset({"en", "es", "pt", "fr", "de", "it", "zh", "ar", "hi", "ru", "vi", "tl", "ko", "und"})


def _language_label(language: str) -> str:
    return language if language in _LABELLED_LANGUAGES else "other"


def _log_commit_failure(offsets: dict[TopicPartition, OffsetAndMetadata], result: object) -> None:
    if isinstance(result, Exception):
        log.warning("offset commit failed (the batch will be replayed, idempotently): %s", type(result).__name__)


class _ForgetRevoked(ConsumerRebalanceListener):
    """Revocation commits nothing of its own (kafka-python 3 forbids blocking commits inside a synchronous
    listener). A batch waiting at a rebalance is finished afterwards, its offsets committed only for the
    partitions still owned; the new owner of a revoked partition replays what was not committed, and
    every effect of a batch is idempotent, so a replay changes nothing."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._scorer.forget(set(revoked))
        log.info("revoked partitions: %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("assigned partitions: %s", sorted(tp.partition for tp in assigned))


class Scorer:
    """The scoring loop. `model` is a ResilientScorer (the classifier with its backup)."""

    def __init__(self, settings: Settings, model: Any, metrics: ScorerMetrics | None = None,
                 replay: bool = False, response_model: Any = None, switch: Any = None) -> None:
        self.settings = settings
        # A replay (`vigil replay`) rebuilds Redis state only: it publishes nothing (the topics already hold
        # every score, review request and dead letter) and does not beat (it must not vouch for the live scorers).
        self.replay = replay
        self.model = model
        self.threshold = float(model.threshold)
        self.urgent_threshold = settings.urgent_threshold
        self.imminent = ImminentPhrases()
        # The language of every user turn (a conversation mostly in a language the model is not validated for is
        # routed to review, reason `language`), and crisis phrases of the other supported languages, which flag a
        # turn whatever the model scored: it reads English only (issue 32).
        self.languages = LanguageIdentifier()
        self.lexicons = LanguageLexicons()
        # Turns in the multilingual model's languages are also scored by it, and flagged at its own threshold
        # (models/multilingual.py; its encoder loads at the first such turn).
        self.multilingual = MultilingualModel.load() if settings.multilingual else None
        # Called for each new urgent conversation once the batch's outputs are acknowledged and before its state
        # is written (so a crash in between repeats it; it must be idempotent). `vigil score` pages and hands off.
        self.on_urgent: Callable[[UrgentCase], None] | None = None
        # The response-safety model (models/response_safety.py): AI replies in conversations with crisis signs are
        # scored; None scores no reply. `on_harmful` is called like `on_urgent` for a reply at its page level.
        self.response_model = response_model
        self.on_harmful: Callable[[HarmfulCase], None] | None = None
        self._harmful_window = 0
        self._evals: Any = None
        if response_model is not None:
            from evaluators.rules import Thresholds

            self._harmful_window = int(Thresholds.load(settings.thresholds_file)[HARMFUL_RULE]["window"])
        self.metrics = metrics or ScorerMetrics()
        self.policy = SamplingPolicy(
            threshold=self.threshold, pi_floor=settings.pi_floor, pi_borderline=settings.pi_borderline,
            band=settings.borderline_band, pi_disagreement=settings.pi_disagreement, pi_language=settings.pi_language,
        )
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._redis = connect(settings.redis_url.get_secret_value())
        self.store = ConversationStore(self._redis, settings.redis_prefix, settings.label_wait_s)
        from safety_gate.heartbeat import Heartbeat

        self.heartbeat = Heartbeat(self._redis, settings.redis_prefix, "scorer", settings.heartbeat_ttl_s)
        self.producer = RecordProducer(settings)
        self._stop = threading.Event()
        self._consumer: Any = None
        self._done: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._last_beat = 0.0
        self._scored_since_beat = 0
        self._backup_since_beat = 0
        self._last_sweep = 0.0
        self._waiting: _Batch | None = None
        self._sweep_failures: dict[str, int] = {}
        # The live-model record (pipeline.live_models.LiveModelSwitch): None keeps `model` for good (tests, tools).
        self.switch = switch
        self.shadow: Any = None  # a ShadowScorer while a candidate is in shadow
        self._replay_shadow = ""  # in a replay: the candidate whose restored shadow scores decide disagreements
        self._shadows = ShadowStore(self._redis, settings.redis_prefix, settings.label_wait_s)
        self._show_models()

    # -- lifecycle ----------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Finish the current batch, commit, and leave (SIGTERM handler)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop after the current batch."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self, max_idle_s: float | None = None) -> None:
        """Consume until stopped (or until `max_idle_s` without records, for tests and replays)."""
        try:
            ensure_topics(self.settings)
        except KafkaError as exc:
            log.warning("could not ensure topics (they may be auto-created): %s", exc)
        self._consumer = make_consumer(
            self.settings, self.settings.scorer_group, [self.settings.topic_events],
            listener=_ForgetRevoked(self),
        )
        try:
            consume(self._consumer, self._stop, self.accept, poll_timeout_ms=self.settings.poll_timeout_ms,
                    max_records=self.settings.batch_size, on_cycle=self._periodic, max_idle_s=max_idle_s,
                    pending=self, on_dead=self.dead)
        finally:
            self._shutdown()

    def _periodic(self, had_records: bool) -> None:
        self._maybe_switch()
        self._maybe_sweep()
        self._maybe_beat()

    def _shutdown(self) -> None:
        if self._consumer is not None:
            try:
                self.commit_done(None)
                self._consumer.close(autocommit=False)
            except Exception as exc:  # noqa: BLE001 - closing after a broker loss
                log.warning("consumer close: %s", type(exc).__name__)
        self.producer.close()
        self.heartbeat.stop()
        self.model.close()
        if self.shadow is not None:
            self.shadow.close()
        if self.switch is not None:
            self.switch.close()

    # -- the live model -----------------------------------------------------------------------------
    @property
    def model_version(self) -> str:
        """The champion's version as its scores name it ("none" while only the backup scorer runs)."""
        model = getattr(self.model, "model", None)
        return str(model.model_version) if model is not None else "none"

    def _show_models(self) -> None:
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(self.model_version, "champion").set(1)
        if self.shadow is not None:
            self.metrics.model_info.labels(self.shadow.version, "shadow").set(1)

    def _maybe_switch(self) -> None:
        if self.switch is None:
            return
        switch = self.switch.poll()
        if switch is not None:
            self.apply_switch(switch)

    def apply_switch(self, switch: Any) -> None:
        """Run what the live record names from the next batch on: the batch held now is finished (published,
        written, committed) by the model that scored it, so no event is lost or scored twice by the swap."""
        from models.resilient import ResilientScorer

        self.flush()
        if switch.champion is not None and switch.champion is not self.model.model:
            old, self.model = self.model, ResilientScorer(switch.champion, switch.champion.threshold,
                                                          timeout_s=self.settings.model_timeout_s)
            old.close()
            self.threshold = float(self.model.threshold)
            self.policy = replace(self.policy, threshold=self.threshold)
            log.info("champion is now %s (threshold %.4f)", self.model_version, self.threshold)
        self._replay_shadow = switch.record.shadow if self.replay else ""
        want = None if self.replay or switch.shadow is None else (switch.record.shadow, switch.record.shadow_share)
        have = None if self.shadow is None else (self.shadow.version, self.shadow.share)
        if want != have or (self.shadow is not None and self.shadow.classifier is not switch.shadow):
            if self.shadow is not None:
                self.shadow.close()
                self.shadow = None
            if want is not None:
                from pipeline.shadow import ShadowScorer

                self.shadow = ShadowScorer(self.settings, switch.shadow, want[0], want[1], self._redis, self.metrics)
                log.info("shadow candidate %s on %.0f%% of conversations", want[0], 100 * want[1])
        self.metrics.model_switches.inc()
        self._show_models()

    def dead(self, rec: Any, exc: BaseException, attempts: int) -> None:
        """Dead-letter a record that failed every attempt alone, and commit past it (the loop found it)."""
        if not self.replay:
            self.producer.send_all([dead_letter_record(self.settings, rec, exc, attempts)])
        self.metrics.events.labels("failed", "dlq").inc()
        self.metrics.dlq.inc()
        self.metrics.failed.inc()
        tp = TopicPartition(rec.topic, rec.partition)
        self._done[tp] = max(self._done.get(tp, 0), rec.offset + 1)
        self.commit_done({tp})

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop bookkeeping of partitions this instance no longer owns."""
        for tp in partitions:
            self._done.pop(tp, None)

    def commit_done(self, partitions: set[TopicPartition] | None, wait: bool = True) -> None:
        """Commit offsets of fully processed batches (all, or only the given partitions).

        Between batches the commit need not be waited for (`wait=False`): the batch's outputs are
        already acknowledged and its state written, so a commit that is lost only replays records whose
        effects are idempotent. Shutdown waits for its commit.
        """
        offsets = {
            tp: OffsetAndMetadata(off, "", -1)
            for tp, off in self._done.items()
            if partitions is None or tp in partitions
        }
        if offsets and self._consumer is not None:
            if wait:
                self._consumer.commit(offsets=offsets)
            else:
                self._consumer.commit_async(offsets=offsets, callback=_log_commit_failure)

    # -- one batch ----------------------------------------------------------------------------------
    def accept(self, records: list[Any]) -> None:
        """Take a polled batch: validate it and start scoring it; then finish the batch before it (its
        outputs acked, state written, offsets committed) while the model works, and leave this one waiting.

        The waiting batch is finished by the next `accept`, or by `flush` when no records follow at once
        (the consume loop sees to that), so nothing waits for long and every commit follows its outputs.
        """
        parsed = self._parse(records)
        pending_scores = self.model.submit([m.text for m in parsed.user], self._histories(parsed.user))
        if self.shadow is not None and parsed.user:
            self.shadow.submit(parsed.user, self.model_version)
        self.flush()
        self._waiting = self._build(parsed, pending_scores)

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

    def waiting(self) -> bool:
        """A batch is scored but not yet published and committed."""
        return self._waiting is not None

    def flush(self) -> None:
        """Finish the waiting batch: publish and wait for acks, write Redis, commit."""
        batch, self._waiting = self._waiting, None
        if batch is not None:
            self._finish(batch)

    def discard(self) -> None:
        """Drop the waiting batch after a failure (the consumer is rewound; its records come again)."""
        self._waiting = None

    def _parse(self, records: list[Any]) -> _Parsed:
        s = self.settings
        self.metrics.batch_size.observe(len(records))
        parsed = _Parsed()
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            parsed.offsets[tp] = max(parsed.offsets.get(tp, 0), rec.offset + 1)
            try:
                event = parse_event(rec.value, max_text_bytes=s.max_text_bytes, accept=EVENT_SCHEMAS)
                if rec.key != getattr(event, "conversation_id", "").encode():
                    # The key places a conversation on one partition, so its turns are scored in order by one
                    # scorer; a record keyed otherwise would race its own conversation on another partition.
                    raise ContractError("<key>", "the record key must be its conversation_id")
            except ContractError as exc:
                dl = dead_letter(exc.reason, topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                 key=rec.key, raw=rec.value)
                parsed.dead.append(OutRecord(s.topic_dlq, None if rec.key is None else dl.key, dl.to_bytes()))
                self.metrics.events.labels("invalid", "dlq").inc()
                self.metrics.dlq.inc()
                continue
            if isinstance(event, ConversationMessage):
                parsed.messages.append(event)
            elif isinstance(event, ConversationClosed):
                parsed.closes.append(event)
            elif isinstance(event, ConversationFeedback):
                self.metrics.events.labels("feedback", "skipped").inc()
        return parsed

    def _build(self, parsed: _Parsed, pending_scores: Any) -> _Batch:
        # The state is read after the batch before was written: "first time flagged" sees every earlier turn.
        batch = _Batch(outputs=list(parsed.dead), offsets=dict(parsed.offsets))
        conversation_ids = sorted({m.conversation_id for m in parsed.messages}
                                  | {c.conversation_id for c in parsed.closes})
        states = self.store.read_many(conversation_ids)
        self._score_messages(parsed, states, batch, pending_scores)
        disagreeing = self._disagreeing([c.conversation_id for c in parsed.closes])
        for event in parsed.closes:
            self._close(event.conversation_id, states, batch, how="event", disagreeing=disagreeing)
            self.metrics.events.labels("closed", "processed").inc()
        return batch

    def _finish(self, batch: _Batch) -> None:
        if not self.replay:
            self.producer.send_all(batch.outputs)
            if self.on_urgent is not None:
                for case in batch.urgent:
                    self.on_urgent(case)
            if self.on_harmful is not None:
                for harm in batch.harmful:
                    self.on_harmful(harm)
        if batch.replies:  # the harmful-response rate's window (idempotent by event id)
            self._eval_store().add_ops(HARMFUL_RULE, batch.replies, self._harmful_window)
        self.store.apply(list(batch.updates.values()))
        self.store.close_many(batch.closes)
        owned = self._consumer.assignment() if self._consumer is not None else None
        # A partition revoked while the batch waited is no longer ours to commit: its new owner replays
        # those records, and every effect above is idempotent.
        offsets = {tp: off for tp, off in batch.offsets.items() if owned is None or tp in owned}
        self._done.update(offsets)
        self.commit_done(set(offsets), wait=False)
        self.metrics.last_batch.set(time.time())

    def _score_messages(
        self, parsed: _Parsed, states: dict[str, ConversationState], batch: _Batch, pending_scores: Any,
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
            self.metrics.turn_languages.labels(_language_label(language.language)).inc()
            urgent_why = ("score" if score >= self.urgent_threshold
                          else "imminent phrase" if self.imminent.search(m.text) else "")
            # an urgent turn is flagged whatever its score: the lexicon's imminent phrases catch what the model
            # might score low, and Vigil caught the crisis either way; so is a turn not read as a validated language
            # (another language, or too short to tell) with a crisis phrase of another supported language, which the
            # model (English only) scores near zero
            phrase = language.language not in self.settings.validated and self.lexicons.find(m.text, LEXICON_TIERS)
            multilingual = multilingual_of.get(m.event_id)
            read_in_language = (multilingual is not None and self.multilingual is not None
                                and multilingual >= self.multilingual.threshold)
            flagged = score >= self.threshold or bool(urgent_why) or bool(phrase) or read_in_language
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
            newly_urgent = u.urgent_turn >= 0 and state.urgent_turn is None
            newly_flagged = u.first_flagged_turn >= 0 and not state.flagged and state.review != "flagged"
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
        if self.response_model is not None:
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

    def _eval_store(self) -> Any:
        if self._evals is None:
            from evaluators.store import EvaluatorStore

            self._evals = EvaluatorStore(self._redis, self.settings.redis_prefix, self.settings.label_wait_s)
        return self._evals

    def _score_replies(self, parsed: _Parsed, states: dict[str, ConversationState], batch: _Batch) -> None:
        """Score the AI's replies in conversations with crisis signs (flagged before or in this batch) with the
        response-safety model, each with the user turns just before it."""
        replies = []
        for m in parsed.messages:
            if m.role != "assistant" or is_gate_reply(m.model_version):
                continue  # the gate's fallback and handoff messages are Vigil's own text, not the AI's
            state = states.get(m.conversation_id) or ConversationState(m.conversation_id, exists=False)
            update = batch.updates.get(m.conversation_id)
            first = state.first_flagged_turn if state.flagged else None
            if update is not None and update.first_flagged_turn >= 0:
                first = update.first_flagged_turn if first is None else min(first, update.first_flagged_turn)
            if first is None or first > m.turn:
                continue  # no crisis sign before this reply
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
        read = self.response_model.score(latest + [joined[i] for i in several], texts + [texts[i] for i in several])
        scores = np.asarray(read[: len(replies)], dtype=np.float64)
        for k, i in enumerate(several):
            scores[i] = max(scores[i], float(read[len(replies) + k]))
        page = float(self.response_model.page_threshold)
        for m, p in zip(replies, scores, strict=True):
            unsafe = float(p) >= page
            batch.replies.append((m.event_id, m.ts.timestamp(), 1.0 if unsafe else 0.0))
            stored = batch.updates[m.conversation_id].turns.get(f"{m.turn:08d}:{m.role}")
            if stored is not None:
                stored["response_risk"] = round(float(p), 4)  # shown to the clinician beside the reply
                stored["response_paged"] = unsafe  # and whether it paged: the judgement measures the page
            self.metrics.replies.labels("unsafe" if unsafe else "safe").inc()
            if unsafe:
                batch.harmful.append(HarmfulCase(m.conversation_id, m.turn, float(p), self.response_model.version))

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
        turns: list[dict[str, Any]], language: str | None = None,
    ) -> OutRecord:
        flagged_turn = first_flagged if first_flagged is not None and first_flagged >= 0 else None
        requested_at = utcnow()

        def serialise(kept: list[dict[str, Any]], omitted: int) -> bytes:
            return ReviewRequest(
                review_id=f"{cid}:{reason}"[:128], conversation_id=cid, reason=reason, pi=pi,  # type: ignore[arg-type]
                max_score=min(1.0, max(0.0, max_score)), first_flagged_turn=flagged_turn,
                turns=[ReviewTurn(**t) for t in kept], requested_at=requested_at, omitted_turns=omitted,
                language=language,
            ).to_bytes()

        record, omitted = bounded_record(turns, flagged_turn, self.settings.review_max_bytes, serialise)
        if omitted:
            self.metrics.review_truncated.inc()
            log.warning("review request for a conversation bounded: %d of %d turns omitted", omitted, len(turns))
        return OutRecord(self.settings.topic_review, cid, record)

    def _close(self, cid: str, states: dict[str, ConversationState], batch: _Batch, how: str,
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
        decision = self.policy.decide(cid, max_score, flagged, backup, disagreement=cid in disagreeing,
                                      unvalidated_language=unvalidated)
        if unvalidated:
            self.metrics.closed_languages.labels(_language_label(language or "")).inc()
        review = decision.reason if decision.selected else "not_sampled"
        if flagged:
            review = "flagged"
        elif decision.selected:
            turns = self._turns_so_far(cid, state, update or TurnUpdate(cid))
            batch.outputs.append(self._review(cid, decision.reason, decision.pi, max_score, None, turns, language))
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

    # -- periodic work ------------------------------------------------------------------------------
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
        batch = _Batch()
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

    def _maybe_beat(self) -> None:
        if self.replay:
            return
        now = time.monotonic()
        if now - self._last_beat < self.settings.heartbeat_interval_s:
            return
        # Healthy means: a member of the group with partitions, and the last cycle went through.
        if not self._consumer.assignment():
            return
        topic = self.settings.topic_events
        lags = consumer_lag(self._consumer)
        lag = sum(lags.values())
        self.metrics.lag.set(lag)
        # Each partition this instance owns, with its lag (0 until the first fetch tells), so the gate can see
        # a partition without a live owner even while other replicas are healthy.
        owned = {tp.partition: lags.get(tp, 0) for tp in self._consumer.assignment() if tp.topic == topic}
        self.metrics.partition_lag.clear()  # only the partitions this instance owns now
        for partition, partition_lag in owned.items():
            self.metrics.partition_lag.labels(str(partition)).set(partition_lag)
        count = len(self._consumer.partitions_for_topic(topic) or ())
        # The share of turns the backup lexicon scored since the last beat (None: none scored), for the watchdog.
        share = self._backup_since_beat / self._scored_since_beat if self._scored_since_beat else None
        self.heartbeat.beat(lag=lag, partitions=owned, partition_count=count or None, backup_share=share)
        self._scored_since_beat = self._backup_since_beat = 0
        self._last_beat = now
