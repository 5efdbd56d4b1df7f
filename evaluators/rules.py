"""The alert-rule table: one TOML file read into typed rules, their states, their actions and the
Prometheus rules generated from it.

Every number and every incident a rule opens comes from the file; nothing else restates them. A bad file
fails at load with the file, the key and what was expected.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vigil_core.contracts import Severity
from vigil_core.rule_names import CUSUM_RULE, HARMFUL_RULE, LANGUAGE_RULE, RECALL_RULE
from vigil_core.tables import load_toml_overlaid, validated

__all__ = ["HARMFUL_RULE", "LANGUAGE_RULE", "classify_languages", "State",
           "Thresholds", "RuleTable", "RuleAction", "DEFAULT_THRESHOLDS", "classify_below",
           "classify_above", "prometheus_rules"]


DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"

# int | float: a count written as 50 stays 50 in the generated Prometheus rules and titles.
Positive = Annotated[int | float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class State(StrEnum):
    """A rule's state; order matters for escalation."""

    OK = "OK"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleAction(_Strict):
    """What a rule entering a state does: open (or add to) an incident, and perhaps trip the halt.

    `title` may name the rule's own fields, e.g. "crisis recall below {critical_below:.0%}".
    """

    severity: Severity
    type: str
    title: str
    dedup: str = Field(min_length=1)
    halt: bool = False

    @model_validator(mode="after")
    def _halt_is_p0(self) -> RuleAction:
        # A halt stops the AI for every user: it is always the P0 clinical escalation, never a quieter page.
        if self.halt and self.severity != "P0":
            raise ValueError("an action that trips the halt must have severity P0")
        return self


Actions = dict[Literal["WARNING", "CRITICAL", "INSUFFICIENT_DATA"], RuleAction]


def _below_in_order(rule: Any) -> Any:
    """A rule that alarms below its thresholds: the critical one may not be above the warning one."""
    if rule.critical_below > rule.warning_below:
        raise ValueError("critical_below must not be above warning_below")
    return rule


class _Rule(_Strict):
    actions: Actions = {}

    def action(self, state: str) -> RuleAction | None:
        """The action of `state` with its title filled from the rule's fields, or None."""
        act = self.actions.get(state)  # type: ignore[call-overload]
        if act is None:
            return None
        fields = self.model_dump(exclude={"actions"})
        return act.model_copy(update={"title": act.title.format(**fields)})


class RecallRule(_Rule):
    """Conversation-level crisis recall over the last `window` labelled crisis conversations."""

    window: Annotated[int, Field(gt=0)]
    max_age_days: Positive
    min_effective_n: Positive
    warning_below: Fraction
    critical_below: Fraction

    _ordered = model_validator(mode="after")(lambda self: _below_in_order(self))


class CusumRule(_Rule):
    """Bernoulli CUSUM on misses among labelled crisis conversations."""

    theta0: Fraction
    theta1: Fraction
    h: Positive
    max_weight: Positive = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> CusumRule:
        if self.theta1 <= self.theta0:
            raise ValueError("theta1 (the miss rate to detect) must be above theta0 (the acceptable one)")
        return self


class LanguageRecallRule(_Rule):
    """Crisis recall per language group (evaluators.window.language_recall)."""

    min_effective_n: Positive
    warning_below: Fraction


class SentinelRule(_Rule):
    """A missed conversation labelled at one of `levels`."""

    levels: list[str] = Field(min_length=1)


class AboveRule(_Rule):
    """A rule that alarms when its value rises above its thresholds."""

    window: Annotated[int, Field(gt=0)]
    min_count: Annotated[int, Field(ge=0)]
    warning_above: int | float
    critical_above: int | float

    @model_validator(mode="after")
    def _ordered(self) -> AboveRule:
        if self.critical_above < self.warning_above:
            raise ValueError("critical_above must not be below warning_above")
        return self


class BelowRule(_Rule):
    """A rule that alarms when its value falls below its thresholds."""

    window: Annotated[int, Field(gt=0)]
    min_count: Annotated[int, Field(ge=0)]
    warning_below: int | float
    critical_below: int | float

    _ordered = model_validator(mode="after")(lambda self: _below_in_order(self))


class RuleTable(_Strict):
    """Every rule Vigil evaluates."""

    crisis_recall: RecallRule
    language_recall: LanguageRecallRule
    cusum: CusumRule
    sentinel: SentinelRule
    ai_latency_p95_ms: AboveRule
    ai_error_rate: AboveRule
    user_satisfaction: BelowRule
    harmful_response_rate: AboveRule


# The rule names the evaluator publishes differ from the table's section for one rule.
_SECTION = {CUSUM_RULE: "cusum"}


class Thresholds:
    """The rule table as loaded: `rules` typed; `table["crisis_recall"]` gives a rule's fields as a dict.

    Example:
        table = Thresholds.load(settings.thresholds_file)
        table.rules.crisis_recall.critical_below   # 0.9
        table.action("crisis_recall", "CRITICAL")  # RuleAction(severity="P0", ..., halt=True)
    """

    def __init__(self, rules: RuleTable, path: Path) -> None:
        self.rules = rules
        self.path = path

    @classmethod
    def load(cls, path: Path | None = None) -> Thresholds:
        """The shipped table, overlaid key by key by `path` if given (VIGIL_THRESHOLDS_FILE)."""
        raw, named = load_toml_overlaid(DEFAULT_THRESHOLDS, path)
        return cls(validated(RuleTable, raw, named), named)

    def rule(self, name: str) -> _Rule:
        """The typed rule behind an evaluator rule name."""
        return getattr(self.rules, _SECTION.get(name, name))  # type: ignore[no-any-return]

    def action(self, rule: str, state: str) -> RuleAction | None:
        """What entering `state` does for `rule` (None: nothing)."""
        if _SECTION.get(rule, rule) not in RuleTable.model_fields:
            return None
        return self.rule(rule).action(state)

    def dedup_keys(self, rule: str) -> set[str]:
        """Every incident dedup key `rule` may open."""
        if _SECTION.get(rule, rule) not in RuleTable.model_fields:
            return set()
        return {a.dedup for a in self.rule(rule).actions.values()}

    def __getitem__(self, rule: str) -> dict[str, Any]:
        return getattr(self.rules, rule).model_dump(exclude={"actions"})  # type: ignore[no-any-return]


def classify_below(value: float | None, n: float, rule: dict[str, Any], min_key: str = "min_count") -> State:
    """State of a rule that alarms when the value falls below its thresholds."""
    if value is None or n < rule[min_key]:
        return State.INSUFFICIENT_DATA
    if value < rule["critical_below"]:
        return State.CRITICAL
    if value < rule["warning_below"]:
        return State.WARNING
    return State.OK


def classify_languages(groups: dict[str, Any], rule: dict[str, Any]) -> tuple[State, list[str]]:
    """State of the per-language recall rule from its groups' rates (value, n), and the groups behind it: WARNING
    when a measured group is below `warning_below`, else INSUFFICIENT_DATA when a group has crisis labels but
    fewer than `min_effective_n`, else OK."""
    low = [g for g, r in groups.items() if r.n >= rule["min_effective_n"] and r.value is not None
           and r.value < rule["warning_below"]]
    if low:
        return State.WARNING, low
    thin = [g for g, r in groups.items() if 0 < r.n < rule["min_effective_n"]]
    if thin:
        return State.INSUFFICIENT_DATA, thin
    return State.OK, []


def classify_above(value: float | None, n: float, rule: dict[str, Any]) -> State:
    """State of a rule that alarms when the value rises above its thresholds."""
    if value is None or n < rule["min_count"]:
        return State.INSUFFICIENT_DATA
    if value > rule["critical_above"]:
        return State.CRITICAL
    if value > rule["warning_above"]:
        return State.WARNING
    return State.OK


# The evaluator evaluates every 2 s; two minutes without one is an outage, not a slow round.
EVALUATOR_STALE_S = 120


# Where each alert's runbook section is: docs/runbook.md, one section per alert, its anchor the lower-cased name.
RUNBOOK = "docs/runbook.md"

# One condition, one page (docs/runbook.md, "Who pages"): the rules of this table are acted on by Vigil's own incident
# engine, which pages through its notifiers with one dedup key per cause; their Prometheus mirrors carry
# `pager: vigil` and Alertmanager sends them to chat only. The blind-spot rules (deploy/prometheus/blindspots.yml),
# conditions Vigil cannot see in itself, carry `pager: prometheus` and page from Alertmanager.
_DESCRIPTIONS = {
    "VigilCrisisRecallCritical": "Of the conversations clinicians labelled crisis, Vigil flagged fewer than the "
                                 "critical share: the evaluator tripped the safety halt and opened the P0.",
    "VigilCrisisRecallWarning": "Crisis recall is below the warning line: the evaluator opened a P1 clinical review.",
    "VigilCrisisRecallInsufficientData": "Too few labelled crisis conversations in the window to measure recall: "
                                         "review throughput or sampling is too low.",
    "VigilCusumCritical": "Missed crises are coming faster than the window shows: the CUSUM tripped the halt.",
    "VigilAILatencyCritical": "The AI service's p95 response time is above the critical line (P1).",
    "VigilAILatencyWarning": "The AI service's p95 response time is above the warning line (P1).",
    "VigilAIErrorRateCritical": "The AI service's error rate is above the critical line (P1).",
    "VigilAIErrorRateWarning": "The AI service's error rate is above the warning line (P1).",
    "VigilSatisfactionCritical": "Users' rolling satisfaction is below the critical line (P2).",
    "VigilSatisfactionWarning": "Users' rolling satisfaction is below the warning line (P2).",
    "VigilSafetyHalted": "The gate answers halted: the AI serves the crisis resources to everyone until two people "
                         "clear the halt.",
    "VigilEvaluatorDown": "The evaluator has not evaluated for two minutes: labels wait, recall is not measured. "
                          "The scorer's watch opens a P1; the live flagging goes on.",
}


def _alert(name: str, expr: str, severity: str, summary: str, for_: str = "0m") -> dict[str, Any]:
    return {
        "alert": name, "expr": expr, "for": for_, "labels": {"severity": severity, "pager": "vigil"},
        "annotations": {"summary": summary, "description": _DESCRIPTIONS[name],
                        "runbook_url": f"{RUNBOOK}#{name.lower()}"},
    }


def prometheus_rules(t: Thresholds) -> dict[str, Any]:
    """Prometheus alerting rules equivalent to the thresholds file (deploy/prometheus/alerts.yml)."""
    r = t[RECALL_RULE]
    lat = t["ai_latency_p95_ms"]
    err = t["ai_error_rate"]
    sat = t["user_satisfaction"]
    recall = f'vigil_rule_value{{rule="{RECALL_RULE}"}}'
    recall_n = f'vigil_rule_n{{rule="{RECALL_RULE}"}}'
    rules = [
        _alert("VigilCrisisRecallCritical",
               f"{recall} < {r['critical_below']} and {recall_n} >= {r['min_effective_n']}", "critical",
               f"Crisis recall below {r['critical_below']:.0%}: safety halt and P0"),
        _alert("VigilCrisisRecallWarning",
               f"{recall} < {r['warning_below']} and {recall_n} >= {r['min_effective_n']}", "warning",
               f"Crisis recall below {r['warning_below']:.0%}: P1 clinical review"),
        _alert("VigilCrisisRecallInsufficientData", f"{recall_n} < {r['min_effective_n']}", "info",
               f"Fewer than {r['min_effective_n']} effective labelled crisis conversations in the window", "1h"),
        _alert("VigilCusumCritical", f'vigil_cusum_statistic >= {t["cusum"]["h"]}', "critical",
               "CUSUM on missed crises crossed its limit: safety halt and P0"),
        _alert("VigilAILatencyCritical",
               f'vigil_rule_value{{rule="ai_latency_p95_ms"}} > {lat["critical_above"]} '
               f'and vigil_rule_n{{rule="ai_latency_p95_ms"}} >= {lat["min_count"]}',
               "critical", f"AI response time p95 above {lat['critical_above']} ms"),
        _alert("VigilAILatencyWarning",
               f'vigil_rule_value{{rule="ai_latency_p95_ms"}} > {lat["warning_above"]} '
               f'and vigil_rule_n{{rule="ai_latency_p95_ms"}} >= {lat["min_count"]}',
               "warning", f"AI response time p95 above {lat['warning_above']} ms"),
        _alert("VigilAIErrorRateCritical",
               f'vigil_rule_value{{rule="ai_error_rate"}} > {err["critical_above"]} '
               f'and vigil_rule_n{{rule="ai_error_rate"}} >= {err["min_count"]}',
               "critical", f"AI error rate above {err['critical_above']:.1%}"),
        _alert("VigilAIErrorRateWarning",
               f'vigil_rule_value{{rule="ai_error_rate"}} > {err["warning_above"]} '
               f'and vigil_rule_n{{rule="ai_error_rate"}} >= {err["min_count"]}',
               "warning", f"AI error rate above {err['warning_above']:.1%}"),
        _alert("VigilSatisfactionCritical",
               f'vigil_rule_value{{rule="user_satisfaction"}} < {sat["critical_below"]} '
               f'and vigil_rule_n{{rule="user_satisfaction"}} >= {sat["min_count"]}',
               "critical", f"Rolling user satisfaction below {sat['critical_below']}"),
        _alert("VigilSatisfactionWarning",
               f'vigil_rule_value{{rule="user_satisfaction"}} < {sat["warning_below"]} '
               f'and vigil_rule_n{{rule="user_satisfaction"}} >= {sat["min_count"]}',
               "warning", f"Rolling user satisfaction below {sat['warning_below']}"),
        _alert("VigilSafetyHalted", "vigil_halt_state == 1", "critical", "The AI service is halted"),
        _alert("VigilEvaluatorDown",
               f"time() - max(vigil_evaluator_last_evaluation_timestamp_seconds) > {EVALUATOR_STALE_S} "
               "or absent(vigil_evaluator_last_evaluation_timestamp_seconds)", "warning",
               "No evaluation for two minutes: crisis recall is not being measured (P1, not a halt)", "1m"),
    ]
    return {"groups": [{"name": "vigil", "rules": rules}]}
