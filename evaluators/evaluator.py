"""The evaluator: clinician labels and operational events in, rolling metrics and rule states out.

Every process keeps its state in Redis, so several evaluators and restarts agree; a state transition is
published once, by the process whose compare-and-set changed it. It knows no Kafka: `vigil evaluate` (the
composition root) feeds it batches of records and publishes the dead letters it returns before committing.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from evaluators.cusum import BernoulliCusum
from evaluators.evaluation import Alert, Evaluation, EvaluatorMetrics, dumps
from evaluators.replies import ReplyJudgements
from evaluators.rules import (
    State,
    Thresholds,
    classify_above,
    classify_below,
    classify_languages,
)
from evaluators.store import EvaluatorStore
from evaluators.window import compute_window
from kafka_io.dead_letters import dead_letter_out
from safety_gate.heartbeat import Heartbeat
from vigil_core.clock import utcnow
from vigil_core.contracts import (
    EVENT_SCHEMAS,
    LABEL_SCHEMAS,
    REVIEW_SCHEMAS,
    ClinicianLabel,
    ConversationFeedback,
    ConversationMessage,
    ReplyJudgement,
    ReviewRequest,
    parse_event,
)
from vigil_core.errors import ContractError
from vigil_core.failpoints import failpoint
from vigil_core.label_signing import LabelSigner, account_role
from vigil_core.records import OutRecord
from vigil_core.redis_client import connect
from vigil_core.roles import CLINICAL_LEAD
from vigil_core.rule_names import CUSUM_RULE, HARMFUL_RULE, LANGUAGE_RULE, RECALL_RULE, SENTINEL_RULE
from vigil_core.settings import Settings
from vigil_core.stats import Rate, rate

__all__ = ["Evaluator", "Evaluation", "Alert", "EvaluatorMetrics", "dumps"]

log = logging.getLogger(__name__)


# One process at a time runs a transition's actions; a process that dies holding the lease delays the retry by
# at most this long (a failed attempt gives the lease up at once). Longer than one action can take (a halt,
# a Kafka send of the incident with its bounded timeout).
ACTION_LEASE_S = 60.0


def _p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


class Evaluator:
    """Applies labels, review requests and events to Redis; evaluates the rules; publishes transitions.

    Example:
        evaluator = Evaluator(settings, on_alert=engine.handle)
        dead_letters = evaluator.apply(records)   # publish these, then commit the records
        evaluation = evaluator.evaluate()
    """

    def __init__(
        self,
        settings: Settings,
        thresholds: Thresholds | None = None,
        metrics: EvaluatorMetrics | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        clock: Callable[[], float] = time.time,
        open_incidents: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.settings = settings
        self.thresholds = thresholds or Thresholds.load(settings.thresholds_file)
        self.metrics = metrics or EvaluatorMetrics()
        self.on_alert = on_alert
        self.clock = clock
        # open incidents by severity, for the gauge; the incident engine is wired in by `vigil evaluate`
        self.open_incidents = open_incidents
        self._redis = connect(settings.redis_url.get_secret_value())
        self.store = EvaluatorStore(self._redis, settings.redis_prefix, settings.label_wait_s)
        self.signer = LabelSigner.from_settings(settings)
        self.replies = ReplyJudgements(self._redis, settings.redis_prefix)
        # Refreshed at every evaluation: the scorers open a P1 when it goes silent (vigil score's watch).
        self.heartbeat = Heartbeat(self._redis, settings.redis_prefix, "evaluator", settings.evaluator_heartbeat_ttl_s)
        c = self.thresholds["cusum"]
        self.cusum = BernoulliCusum(c["theta0"], c["theta1"], c["h"], c.get("max_weight", 5.0))
        self.stopping = threading.Event()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"

    def stop(self, *_: object) -> None:
        """Finish the current batch, commit, leave."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop after the current batch."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def topics(self) -> list[str]:
        """The topics the evaluator consumes."""
        s = self.settings
        return [s.topic_labels, s.topic_events, s.topic_review]

    def _label_refusal(self, label: ClinicianLabel | ReplyJudgement) -> str | None:
        """Why a label must not count (unsigned, forged, or of an unknown or disabled account), or None."""
        refused = self.signer.refusal(label)
        if refused is None:
            role = account_role(self._redis, self.settings.redis_prefix, label.reviewer_id)
            if role is None:
                refused = f"reviewer {label.reviewer_id!r} is not an enabled account"
            elif getattr(label, "adjudication", False) and role != CLINICAL_LEAD:
                refused = f"adjudication by {label.reviewer_id!r}, a {role}: only a clinical lead adjudicates"
        return refused

    # -- applying -----------------------------------------------------------------------------------
    def apply(self, records: list[Any]) -> list[OutRecord]:
        """Apply a batch of consumed records to the Redis state; returns the dead letters of bad ones.

        The caller publishes the dead letters and only then commits the batch (at-least-once; applying a
        record twice changes nothing).
        """
        s = self.settings
        t = self.thresholds
        dead: list[OutRecord] = []
        latency: list[tuple[str, float, float]] = []
        errors: list[tuple[str, float, float]] = []
        satisfaction: list[tuple[str, float, float]] = []
        reviews: list[str] = []
        signs: list[str] = []  # review requests of the warning-sign route
        for rec in records:
            accept = (LABEL_SCHEMAS if rec.topic == s.topic_labels
                      else REVIEW_SCHEMAS if rec.topic == s.topic_review else EVENT_SCHEMAS)
            try:
                event = parse_event(rec.value, max_text_bytes=s.max_text_bytes, accept=accept)
            except ContractError as exc:
                if rec.topic != s.topic_events:  # the scorer already dead-letters bad events
                    dead.append(dead_letter_out(s, exc.reason, rec))
                    self.metrics.labels.labels("invalid").inc()
                continue
            if isinstance(event, ClinicianLabel | ReplyJudgement):
                refused = self._label_refusal(event)
                if refused is not None:  # it would move the recall number: only the review app's labels may
                    log.warning("label %s refused: %s", event.label_id, refused)
                    dead.append(dead_letter_out(s, refused, rec))
                    self.metrics.labels.labels("refused").inc()
                    continue
                applied = (self.replies.apply(event) if isinstance(event, ReplyJudgement)
                           else self.store.apply_label(event))
                self.metrics.labels.labels(applied).inc()
            elif isinstance(event, ReviewRequest):
                reviews.append(event.conversation_id)
                if event.reason == "warning_sign":
                    signs.append(event.conversation_id)
            elif isinstance(event, ConversationMessage) and event.role == "assistant":
                ts = event.ts.timestamp()
                if event.latency_ms is not None:
                    latency.append((event.event_id, ts, float(event.latency_ms)))
                errors.append((event.event_id, ts, 1.0 if event.error not in (None, False, "") else 0.0))
            elif isinstance(event, ConversationFeedback):
                satisfaction.append((event.event_id, event.ts.timestamp(), float(event.satisfaction)))
        self.store.note_review_requested(reviews, warning_signs=signs)
        self.store.add_ops("ai_latency_p95_ms", latency, t["ai_latency_p95_ms"]["window"])
        self.store.add_ops("ai_error_rate", errors, t["ai_error_rate"]["window"])
        self.store.add_ops("user_satisfaction", satisfaction, t["user_satisfaction"]["window"])
        return dead

    # -- evaluating ---------------------------------------------------------------------------------
    def evaluate(self) -> Evaluation:
        """Compute every rate and rule state from Redis; publish transitions."""
        t = self.thresholds
        rc = t[RECALL_RULE]
        now = self.clock()
        max_age = float(rc["max_age_days"]) * 86400.0
        self.run_pending_actions()
        self.store.retry_unknown()
        items = self.store.labelled(since=now - max_age)
        lr = t[LANGUAGE_RULE]
        window = compute_window(items, now, window=int(rc["window"]), max_age_s=max_age, cusum=self.cusum,
                                sentinel_levels=t["sentinel"]["levels"],
                                validated_languages=sorted(self.settings.validated),
                                language_min_effective_n=float(lr["min_effective_n"]))
        recall = window.rates[RECALL_RULE]
        rules: dict[str, dict[str, Any]] = {}
        rules[RECALL_RULE] = self._row(classify_below(recall.value, recall.n, rc, "min_effective_n"), recall)
        language_state, groups = classify_languages(window.by_language, lr)
        measured = [r for r in window.by_language.values() if r.n >= lr["min_effective_n"] and r.value is not None]
        rules[LANGUAGE_RULE] = {
            "state": language_state.value, "value": min((r.value for r in measured), default=None),  # type: ignore[type-var]
            "lower": None, "upper": None, "n": min((r.n for r in window.by_language.values()), default=0.0),
            "groups": groups}
        cusum_state = State.CRITICAL if window.cusum >= self.cusum.h else State.OK
        rules[CUSUM_RULE] = {"state": cusum_state.value, "value": window.cusum, "lower": None, "upper": None,
                             "n": float(window.crisis_in_window)}
        sentinel_state = State.CRITICAL if window.missed_imminent else State.OK
        rules[SENTINEL_RULE] = {"state": sentinel_state.value, "value": float(len(window.missed_imminent)),
                                "lower": None, "upper": None, "n": float(window.crisis_in_window)}
        lat = self.store.ops_values("ai_latency_p95_ms")
        p95 = _p95(lat)
        rules["ai_latency_p95_ms"] = {"state": classify_above(p95, len(lat), t["ai_latency_p95_ms"]).value,
                                      "value": p95, "lower": None, "upper": None, "n": float(len(lat))}
        err = self.store.ops_values("ai_error_rate")
        err_rate = rate(sum(err), len(err))
        rules["ai_error_rate"] = self._row(classify_above(err_rate.value, len(err), t["ai_error_rate"]), err_rate)
        # written by the scorers (they score the replies): 1.0 per reply judged unsafe, 0.0 per safe one
        harm = self.store.ops_values(HARMFUL_RULE)
        harm_rate = rate(sum(harm), len(harm))
        rules[HARMFUL_RULE] = self._row(classify_above(harm_rate.value, len(harm), t[HARMFUL_RULE]), harm_rate)
        # how often its page is right, by the clinicians' judgements of replies (evaluators/replies.py)
        rules[HARMFUL_RULE]["judged"] = {k: v.to_dict() for k, v in self.replies.rates().items()}
        sat = self.store.ops_values("user_satisfaction")
        mean = float(np.mean(sat)) if sat else None
        rules["user_satisfaction"] = {"state": classify_below(mean, len(sat), t["user_satisfaction"]).value,
                                      "value": mean, "lower": None, "upper": None, "n": float(len(sat))}
        labelled, requested = self.store.coverage_counts()
        coverage = rate(min(labelled, requested), requested)
        unknown = self.store.unknown()
        evaluation = Evaluation(window, rules, [], sum(unknown.values()), coverage)
        self._publish(evaluation)
        self._export(evaluation, len(unknown))
        self.heartbeat.beat()
        self.metrics.last_evaluation.set(time.time())
        self.store.record_history(now, {k: v.to_dict() for k, v in window.rates.items()},
                                  {k: v["state"] for k, v in rules.items()})
        return evaluation

    @staticmethod
    def _row(state: State, r: Rate) -> dict[str, Any]:
        return {"state": state.value, "value": r.value, "lower": r.lower, "upper": r.upper, "n": r.n}

    def _publish(self, ev: Evaluation) -> None:
        at = utcnow().isoformat()
        snapshot = {k: v.to_dict() for k, v in ev.window.rates.items()}
        for rule, row in ev.rules.items():
            previous = self.store.states().get(rule, State.OK.value)
            key = rule
            evidence = (ev.window.missed if rule in (RECALL_RULE, CUSUM_RULE)
                        else [f"language group {g}" for g in row.get("groups", [])])
            if rule == SENTINEL_RULE and ev.window.missed_imminent:
                # every missed imminent conversation is its own alert
                for cid in ev.window.missed_imminent:
                    self._transition(f"{SENTINEL_RULE}:{cid}", rule, row, "OK", [cid], ev, at, snapshot)
                continue
            self._transition(key, rule, row, previous, evidence, ev, at, snapshot)

    def _transition(self, key: str, rule: str, row: dict[str, Any], previous: str, evidence: list[str],
                    ev: Evaluation, at: str, snapshot: dict[str, Any]) -> None:
        alert = Alert(rule=rule, state=row["state"], previous=previous, value=row["value"], lower=row["lower"],
                      upper=row["upper"], n=row["n"], window_start=ev.window.window_start,
                      window_end=ev.window.window_end, evidence=evidence[-50:], at=at, metrics=snapshot)
        action_id = self.store.transition(key, row["state"], alert.to_dict(), pending=self.on_alert is not None)
        if action_id:
            ev.alerts.append(alert)
            self.metrics.alerts.labels(rule, row["state"]).inc()
            log.warning("rule %s: %s -> %s (value %s, n %.1f)", key, previous, row["state"], row["value"], row["n"])
            if row["state"] == "CRITICAL":
                failpoint("evaluator.after_critical_transition")
            self._act(action_id, alert)

    def _act(self, action_id: str, alert: Alert) -> None:
        """Run one transition's actions; on failure they stay pending and the next evaluation runs them again."""
        if self.on_alert is None or not self.store.claim_action(action_id, self.instance, ACTION_LEASE_S):
            return
        try:
            self.on_alert(alert)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the action pending; the rules go on
            self.metrics.actions_failed.labels(alert.rule, alert.state).inc()
            log.error("actions of rule %s -> %s failed, retried at the next evaluation: %s", alert.rule,
                      alert.state, type(exc).__name__)
            self.store.release_action(action_id)
            return
        self.store.action_done(action_id)

    def run_pending_actions(self) -> int:
        """Run the actions of transitions whose actions did not complete (a failure, or a process that died
        between a transition and its actions); returns how many completed now."""
        if self.on_alert is None:
            return 0
        done = 0
        for action_id, raw in self.store.pending_actions().items():
            alert = Alert(**raw)
            log.warning("running the pending actions of rule %s -> %s (%s)", alert.rule, alert.state, action_id)
            self._act(action_id, alert)
            done += action_id not in self.store.pending_actions()
        return done

    def _export(self, ev: Evaluation, unknown_conversations: int) -> None:
        m = self.metrics
        by_language = {f"crisis_recall_language_{g}": r for g, r in ev.window.by_language.items()}
        judged = {k: Rate(**v) for k, v in ev.rules.get(HARMFUL_RULE, {}).get("judged", {}).items()}
        for name, r in (ev.window.rates | {"label_coverage": ev.coverage} | by_language | judged).items():
            m.rate_value.labels(name).set(math.nan if r.value is None else r.value)
            m.rate_lower.labels(name).set(r.lower)
            m.rate_upper.labels(name).set(r.upper)
            m.rate_n.labels(name).set(r.n)
        for rule, row in ev.rules.items():
            m.rule_value.labels(rule).set(math.nan if row["value"] is None else row["value"])
            m.rule_n.labels(rule).set(row["n"])
            for state in State:
                m.rule_state.labels(rule, state.value).set(1.0 if row["state"] == state.value else 0.0)
        latency = ev.rules.get("ai_latency_p95_ms", {}).get("value")
        m.ai_latency_p95.set(math.nan if latency is None else latency / 1000.0)
        m.cusum.set(ev.window.cusum)
        m.found_by_warning_sign.set(len(ev.window.found_by_warning_sign))
        m.unknown.set(unknown_conversations)
        if self.open_incidents is not None:
            for severity, count in self.open_incidents().items():
                m.incidents_open.labels(severity).set(count)
