"""What one evaluation produces: the rule rows and rates (`Evaluation`), a rule's state transition (`Alert`), and the
Prometheus metrics the evaluator exports them as."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from evaluators.rules import State
from evaluators.window import WindowMetrics
from vigil_core.build import register_build_info
from vigil_core.rule_names import CUSUM_RULE, LANGUAGE_RULE, OPS_RULES, RECALL_RULE, SENTINEL_RULE
from vigil_core.stats import Rate

__all__ = ["Alert", "Evaluation", "EvaluatorMetrics", "dumps"]


@dataclass(frozen=True)
class Alert:
    """A rule's state transition, handed to the action layer."""

    rule: str
    state: str
    previous: str
    value: float | None
    lower: float | None
    upper: float | None
    n: float
    window_start: float | None
    window_end: float | None
    evidence: list[str]
    at: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class Evaluation:
    """One evaluation: rates, rule rows (state, value, interval, n) and the alerts it raised."""

    window: WindowMetrics
    rules: dict[str, dict[str, Any]]
    alerts: list[Alert]
    labels_unknown: int
    coverage: Rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`vigil evaluate --once --json`)."""
        return {
            "rules": [{"rule": k, **v} for k, v in self.rules.items()],
            "rates": {k: v.to_dict() for k, v in self.window.rates.items()}
            | {"label_coverage": self.coverage.to_dict()},
            "cusum": self.window.cusum,
            "window_start": self.window.window_start,
            "window_end": self.window.window_end,
            "crisis_in_window": self.window.crisis_in_window,
            "missed": self.window.missed,
            "found_by_warning_sign": self.window.found_by_warning_sign,
            "crisis_recall_by_language": {k: v.to_dict() for k, v in self.window.by_language.items()},
            "labels_for_unknown_conversations": self.labels_unknown,
        }


class EvaluatorMetrics:
    """Prometheus metrics: every rate with bounds and n, rule states, label counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        register_build_info(r)
        self.rate_value = Gauge("vigil_metric_value", "rolling rate", ["metric"], registry=r)
        self.rate_lower = Gauge("vigil_metric_lower", "Wilson 95% lower bound", ["metric"], registry=r)
        self.rate_upper = Gauge("vigil_metric_upper", "Wilson 95% upper bound", ["metric"], registry=r)
        self.rate_n = Gauge("vigil_metric_n", "effective n behind the rate", ["metric"], registry=r)
        self.rule_value = Gauge("vigil_rule_value", "value a rule compares", ["rule"], registry=r)
        # the AI's response time in base units (the rule compares milliseconds, as the thresholds file states them)
        self.ai_latency_p95 = Gauge("vigil_ai_response_p95_seconds",
                                    "p95 of the AI service's response time over the rule's window", registry=r)
        self.rule_n = Gauge("vigil_rule_n", "count or effective n behind a rule", ["rule"], registry=r)
        self.rule_state = Gauge("vigil_rule_state", "1 for the rule's current state", ["rule", "state"], registry=r)
        self.last_evaluation = Gauge("vigil_evaluator_last_evaluation_timestamp_seconds",
                                     "unix time of the last completed evaluation", registry=r)
        self.cusum = Gauge("vigil_cusum_statistic", "Bernoulli CUSUM statistic on missed crises", registry=r)
        self.found_by_warning_sign = Gauge(
            "vigil_crises_found_by_warning_sign",
            "crisis conversations of the recall window the model missed and the warning-sign route sent to review",
            registry=r)
        self.labels = Counter("vigil_labels", "clinician labels consumed", ["outcome"], registry=r)
        self.unknown = Gauge("vigil_labels_unknown_conversations", "labelled conversations with no prediction",
                             registry=r)
        self.alerts = Counter("vigil_alerts", "rule state transitions published", ["rule", "state"], registry=r)
        self.actions_failed = Counter("vigil_alert_actions_failed",
                                      "attempts at a transition's actions (halt, incident) that failed; retried",
                                      ["rule", "state"], registry=r)
        self.incidents_open = Gauge("vigil_incidents_open", "open incidents by severity", ["severity"], registry=r)
        # Series exist from the start (at 0), so dashboards and alerts see them before the first event.
        for rule in (RECALL_RULE, LANGUAGE_RULE, CUSUM_RULE, SENTINEL_RULE, *OPS_RULES):
            for state in State:
                self.alerts.labels(rule, state.value)
        for outcome in ("applied", "duplicate", "stale", "unknown", "invalid"):
            self.labels.labels(outcome)


def dumps(ev: Evaluation) -> str:
    """One-line JSON of an evaluation."""
    return json.dumps(ev.to_dict(), default=str)
