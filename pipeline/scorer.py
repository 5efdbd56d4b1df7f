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
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from evaluators.store import EvaluatorStore
from kafka_io import (
    RecordProducer,
    consume,
    consumer_lag,
    dead_letter_record,
    ensure_topics,
    make_consumer,
)
from kafka_io.dead_letters import dead_letter_out
from models.backup import ImminentPhrases, LanguageLexicons, StrongPhrases, WarningSigns
from models.language import LanguageIdentifier
from models.multilingual import MultilingualModel
from models.reply_phrases import HarmfulReplyPhrases
from models.resilient import PendingScores, ResilientScorer
from pipeline.batch import Batch, Parsed
from pipeline.closing import Closing
from pipeline.collaborators import ModelSwitch, ReplyModel, Shadow, SwitchTo, TurnModel
from pipeline.metrics import ScorerMetrics
from pipeline.offsets import ForgetRevoked, Offsets
from pipeline.replies import ReplyScoring
from pipeline.sampling import SamplingPolicy
from pipeline.scoring import TurnScoring
from pipeline.turn_rules import urgent_level
from vigil_core.cases import HarmfulCase, UrgentCase
from vigil_core.contracts import (
    EVENT_SCHEMAS,
    ConversationClosed,
    ConversationFeedback,
    ConversationMessage,
    parse_event,
)
from vigil_core.conversations import ConversationStore
from vigil_core.errors import ContractError
from vigil_core.model_record import ShadowStore
from vigil_core.redis_client import connect
from vigil_core.rule_names import HARMFUL_RULE
from vigil_core.settings import Settings

__all__ = ["Scorer", "EVENT_SCHEMAS", "UrgentCase", "HarmfulCase", "HARMFUL_RULE"]


log = logging.getLogger(__name__)



class Scorer(TurnScoring, ReplyScoring, Closing):
    """The scoring loop. `model` is a ResilientScorer (the classifier with its backup)."""

    def __init__(self, settings: Settings, model: TurnModel, metrics: ScorerMetrics | None = None,
                 replay: bool = False, response_model: ReplyModel | None = None,
                 switch: ModelSwitch | None = None) -> None:
        self.settings = settings
        # A replay (`vigil replay`) rebuilds Redis state only: it publishes nothing (the topics already hold
        # every score, review request and dead letter) and does not beat (it must not vouch for the live scorers).
        self.replay = replay
        self.model = model
        self.threshold = float(model.threshold)
        self.urgent_threshold = urgent_level(settings.urgent_threshold, getattr(model, "model", None))
        self.imminent = ImminentPhrases()
        # Explicit phrases (the lexicon's strong tier) flag a turn whatever the model scored (issue 31).
        self.strong = StrongPhrases()
        # Warning signs said without feeling (giving things away, a goodbye) raise a conversation's review sampling.
        self.warning_signs = WarningSigns()
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
        # With it, a reply that says outright what the person fears pages whatever the model scored.
        self.reply_phrases = HarmfulReplyPhrases() if response_model is not None else None
        self.on_harmful: Callable[[HarmfulCase], None] | None = None
        self._harmful_window = 0
        self._evals: EvaluatorStore | None = None
        if response_model is not None:
            from evaluators.rules import Thresholds

            self._harmful_window = int(Thresholds.load(settings.thresholds_file)[HARMFUL_RULE]["window"])
        self.metrics = metrics or ScorerMetrics()
        self.policy = SamplingPolicy(
            threshold=self.threshold, pi_floor=settings.pi_floor, pi_borderline=settings.pi_borderline,
            band=settings.borderline_band, pi_disagreement=settings.pi_disagreement, pi_language=settings.pi_language,
            pi_warning_sign=settings.pi_warning_sign,
        )
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._redis = connect(settings.redis_url.get_secret_value())
        self.store = ConversationStore(self._redis, settings.redis_prefix, settings.label_wait_s)
        from safety_gate.heartbeat import Heartbeat

        self.heartbeat = Heartbeat(self._redis, settings.redis_prefix, "scorer", settings.heartbeat_ttl_s)
        self.producer = RecordProducer(settings)
        self._stop = threading.Event()
        self._consumer: KafkaConsumer | None = None
        self.offsets = Offsets()  # how far each partition is finished (pipeline/offsets.py)
        self._last_beat = 0.0
        self._scored_since_beat = 0
        self._backup_since_beat = 0
        self._last_sweep = 0.0
        self._waiting: Batch | None = None
        self._sweep_failures: dict[str, int] = {}
        # The live-model record (pipeline.live_models.LiveModelSwitch): None keeps `model` for good (tests, tools).
        self.switch = switch
        self.shadow: Shadow | None = None  # a ShadowScorer while a candidate is in shadow
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
            listener=ForgetRevoked(self.offsets),
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
                self.offsets.commit(self._consumer, None)
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
        model = self.model.model
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

    def apply_switch(self, switch: SwitchTo) -> None:
        """Run what the live record names from the next batch on: the batch held now is finished (published,
        written, committed) by the model that scored it, so no event is lost or scored twice by the swap."""
        self.flush()
        if switch.champion is not None and switch.champion is not self.model.model:
            new = ResilientScorer(switch.champion, switch.champion.threshold, timeout_s=self.settings.model_timeout_s)
            # the model's levels first, the model last: whoever reads the champion's version (metrics, a test) then
            # finds its levels with it, never the old model's
            self.threshold = float(new.threshold)
            self.urgent_threshold = urgent_level(self.settings.urgent_threshold, switch.champion)
            self.policy = replace(self.policy, threshold=self.threshold)
            old, self.model = self.model, new
            old.close()
            log.info("champion is now %s (threshold %.4f, urgent level %.2f)", self.model_version, self.threshold,
                     self.urgent_threshold)
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
        self.offsets.past(tp, rec.offset)
        self.offsets.commit(self._consumer, {tp})

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

    def _parse(self, records: list[Any]) -> Parsed:
        s = self.settings
        self.metrics.batch_size.observe(len(records))
        parsed = Parsed()
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
                parsed.dead.append(dead_letter_out(s, exc.reason, rec))
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

    def _build(self, parsed: Parsed, pending_scores: PendingScores) -> Batch:
        # The state is read after the batch before was written: "first time flagged" sees every earlier turn.
        batch = Batch(outputs=list(parsed.dead), offsets=dict(parsed.offsets))
        conversation_ids = sorted({m.conversation_id for m in parsed.messages}
                                  | {c.conversation_id for c in parsed.closes})
        states = self.store.read_many(conversation_ids)
        self._score_messages(parsed, states, batch, pending_scores)
        disagreeing = self._disagreeing([c.conversation_id for c in parsed.closes])
        for event in parsed.closes:
            self._close(event.conversation_id, states, batch, how="event", disagreeing=disagreeing)
            self.metrics.events.labels("closed", "processed").inc()
        return batch

    def _finish(self, batch: Batch) -> None:
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
        self.offsets.commit(self._consumer, self.offsets.finished(self._consumer, batch.offsets), wait=False)
        self.metrics.last_batch.set(time.time())

    # -- periodic work (the idle sweep: pipeline/closing.py) ---------------------------------------------
    def _maybe_beat(self) -> None:
        if self.replay:
            return
        now = time.monotonic()
        if now - self._last_beat < self.settings.heartbeat_interval_s:
            return
        # Healthy means: a member of the group with partitions, and the last cycle went through.
        consumer = self._consumer
        if consumer is None or not consumer.assignment():
            return
        topic = self.settings.topic_events
        lags = consumer_lag(consumer)
        lag = sum(lags.values())
        self.metrics.lag.set(lag)
        # Each partition this instance owns, with its lag (0 until the first fetch tells), so the gate can see
        # a partition without a live owner even while other replicas are healthy.
        owned = {tp.partition: lags.get(tp, 0) for tp in consumer.assignment() if tp.topic == topic}
        self.metrics.partition_lag.clear()  # only the partitions this instance owns now
        for partition, partition_lag in owned.items():
            self.metrics.partition_lag.labels(str(partition)).set(partition_lag)
        count = len(consumer.partitions_for_topic(topic) or ())
        # The share of turns the backup lexicon scored since the last beat (None: none scored), for the watchdog.
        share = self._backup_since_beat / self._scored_since_beat if self._scored_since_beat else None
        self.heartbeat.beat(lag=lag, partitions=owned, partition_count=count or None, backup_share=share)
        self._scored_since_beat = self._backup_since_beat = 0
        self._last_beat = now
