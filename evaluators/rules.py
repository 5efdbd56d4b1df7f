"""The alert-rule table: thresholds from one TOML file, states, and the Prometheus rules generated from it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["State", "Thresholds", "DEFAULT_THRESHOLDS", "classify_below", "classify_above", "prometheus_rules"]

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"


class State(StrEnum):
    """A rule's state; order matters for escalation."""

    OK = "OK"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True)
class Thresholds:
    """The parsed thresholds file."""

    raw: dict[str, Any]
    path: Path

    @classmethod
    def load(cls, path: Path | None = None) -> Thresholds:
        """Read the TOML file (default: the seed thresholds shipped with Vigil)."""
        p = Path(path or DEFAULT_THRESHOLDS)
        with open(p, "rb") as fh:
            return cls(tomllib.load(fh), p)

    def __getitem__(self, rule: str) -> dict[str, Any]:
        return self.raw[rule]  # type: ignore[no-any-return]


def classify_below(value: float | None, n: float, rule: dict[str, Any], min_key: str = "min_count") -> State:
    """State of a rule that alarms when the value falls below its thresholds."""
    if value is None or n < rule[min_key]:
        return State.INSUFFICIENT_DATA
    if value < rule["critical_below"]:
        return State.CRITICAL
    if value < rule["warning_below"]:
        return State.WARNING
    return State.OK


def classify_above(value: float | None, n: float, rule: dict[str, Any]) -> State:
    """State of a rule that alarms when the value rises above its thresholds."""
    if value is None or n < rule["min_count"]:
        return State.INSUFFICIENT_DATA
    if value > rule["critical_above"]:
        return State.CRITICAL
    if value > rule["warning_above"]:
        return State.WARNING
    return State.OK


def _alert(name: str, expr: str, severity: str, summary: str, for_: str = "0m") -> dict[str, Any]:
    return {
        "alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def prometheus_rules(t: Thresholds) -> dict[str, Any]:
    """Prometheus alerting rules equivalent to the thresholds file (deploy/prometheus/alerts.yml)."""
    r = t["crisis_recall"]
    lat = t["ai_latency_p95_ms"]
    err = t["ai_error_rate"]
    sat = t["user_satisfaction"]
    recall = 'vigil_rule_value{rule="crisis_recall"}'
    recall_n = 'vigil_rule_n{rule="crisis_recall"}'
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
    ]
    return {"groups": [{"name": "vigil", "rules": rules}]}
