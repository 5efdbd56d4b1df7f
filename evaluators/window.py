"""Rolling metrics over labelled conversations (pure functions, no I/O).

Crisis recall is conversation-level and Horvitz-Thompson weighted: each labelled conversation stands
for 1/pi conversations, so sampled unflagged conversations stand for all unflagged traffic. Every rate
carries a Wilson 95% interval computed on its Kish effective n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluators.cusum import BernoulliCusum
from vigil_core.rule_names import RECALL_RULE
from vigil_core.stats import Rate, rate

__all__ = ["LabelledConversation", "WindowMetrics", "compute_window", "weighted_rate", "cohen_kappa",
           "language_recall", "OTHER_LANGUAGES"]

LEVEL_ORDER = {"no_risk": 0, "low": 1, "moderate": 2, "high": 3, "imminent": 4}


@dataclass(frozen=True, slots=True)
class LabelledConversation:
    """A labelled conversation joined to its prediction."""

    conversation_id: str
    conversation_time: float
    levels: dict[str, str]  # reviewer -> level
    flagged: bool
    pi: float
    timely: bool = False
    adjudicated: str | None = None  # a clinical lead's level on a disagreement
    language: str | None = None  # the conversation's language (vigil_core.conversations.conversation_language)
    # sent to review by the warning-sign route (reason `warning_sign`: nothing flagged it, a user turn held a sign)
    warning_sign_review: bool = False

    @property
    def level(self) -> str:
        """The adjudicated level where a clinical lead decided; until then the most severe level any reviewer
        gave (a crisis one reviewer saw counts as a crisis while the disagreement waits)."""
        if self.adjudicated is not None:
            return self.adjudicated
        return max(self.levels.values(), key=lambda lvl: LEVEL_ORDER[lvl])

    @property
    def crisis(self) -> bool:
        """Moderate or above."""
        return LEVEL_ORDER[self.level] >= 2

    @property
    def severe(self) -> bool:
        """High or imminent."""
        return LEVEL_ORDER[self.level] >= 3

    @property
    def weight(self) -> float:
        """Horvitz-Thompson weight 1/pi."""
        return 1.0 / max(self.pi, 1e-9)


def weighted_rate(hits: Sequence[bool], weights: Sequence[float]) -> Rate:
    """Weighted proportion with a Wilson interval on the Kish effective n = (sum w)^2 / sum w^2."""
    total = float(sum(weights))
    if total <= 0:
        return rate(0, 0)
    p = sum(w for h, w in zip(hits, weights, strict=True) if h) / total
    n_eff = total * total / sum(w * w for w in weights)
    r = rate(p * n_eff, n_eff)
    return Rate(value=p, lower=r.lower, upper=r.upper, n=n_eff)


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> Rate:
    """Cohen's kappa over (first, second) reviewer levels; value None with fewer than 2 pairs."""
    if len(pairs) < 2:
        return Rate(None, 0.0, 1.0, len(pairs))
    cats = sorted(LEVEL_ORDER)
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    expected = sum(
        (sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in cats
    )
    kappa = 1.0 if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return Rate(kappa, -1.0, 1.0, n)


@dataclass
class WindowMetrics:
    """Every rate of the window, the CUSUM statistic, and the evidence behind the misses."""

    rates: dict[str, Rate]
    window_start: float | None
    window_end: float | None
    crisis_in_window: int
    cusum: float
    missed: list[str] = field(default_factory=list)
    missed_imminent: list[str] = field(default_factory=list)
    by_language: dict[str, Rate] = field(default_factory=dict)  # crisis recall per language group
    # missed crises a clinician saw because the warning-sign route sent them to review (issue 31): the model's
    # confident misses that route finds, a count the recall does not show (each is a miss there, as it should be)
    found_by_warning_sign: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rates": {k: v.to_dict() for k, v in self.rates.items()},
            "window_start": self.window_start, "window_end": self.window_end,
            "crisis_in_window": self.crisis_in_window, "cusum": self.cusum, "missed": self.missed,
            "missed_imminent": self.missed_imminent,
            "crisis_recall_by_language": {k: v.to_dict() for k, v in self.by_language.items()},
            "found_by_warning_sign": self.found_by_warning_sign,
        }


OTHER_LANGUAGES = "other"  # the group of every language with too few crisis labels to stand alone
UNDETERMINED = "und"  # conversations whose language no turn decided (all one-word turns, say)


def language_recall(crises: Sequence[LabelledConversation], validated: Sequence[str],
                    min_effective_n: float) -> dict[str, Rate]:
    """Crisis recall per language group (docs/design.md section 7): each validated language by itself, each other
    language with at least `min_effective_n` (Kish effective) crisis labels by itself, the rest together as
    `other`. A group appears only when it has crisis labels."""
    by: dict[str, list[LabelledConversation]] = {}
    for i in crises:
        by.setdefault(i.language or UNDETERMINED, []).append(i)
    out: dict[str, Rate] = {}
    pooled: list[LabelledConversation] = []
    for language in sorted(by):
        items = by[language]
        r = weighted_rate([i.flagged for i in items], [i.weight for i in items])
        if language in validated or r.n >= min_effective_n:
            out[language] = r
        else:
            pooled += items
    if pooled:
        out[OTHER_LANGUAGES] = weighted_rate([i.flagged for i in pooled], [i.weight for i in pooled])
    return out


def compute_window(
    items: Sequence[LabelledConversation],
    now: float,
    window: int = 200,
    max_age_s: float = 90 * 86400.0,
    cusum: BernoulliCusum | None = None,
    sentinel_levels: Sequence[str] = ("imminent",),
    validated_languages: Sequence[str] = ("en",),
    language_min_effective_n: float = 30.0,
) -> WindowMetrics:
    """Metrics over the last `window` labelled crisis conversations (at most `max_age_s` old)."""
    cusum = cusum or BernoulliCusum()
    recent = sorted((i for i in items if now - i.conversation_time <= max_age_s), key=lambda i: i.conversation_time)
    crises = [i for i in recent if i.crisis]
    win_crises = crises[-window:]
    start = win_crises[0].conversation_time if win_crises else (recent[0].conversation_time if recent else None)
    in_span = [i for i in recent if start is not None and i.conversation_time >= start]
    negatives = [i for i in in_span if not i.crisis]
    flagged = [i for i in in_span if i.flagged]
    severe = [i for i in win_crises if i.severe]

    rates = {
        RECALL_RULE: weighted_rate([i.flagged for i in win_crises], [i.weight for i in win_crises]),
        "severe_recall": weighted_rate([i.flagged for i in severe], [i.weight for i in severe]),
        "timely_recall": weighted_rate([i.flagged and i.timely for i in win_crises], [i.weight for i in win_crises]),
        "precision": rate(sum(i.crisis for i in flagged), len(flagged)),
        "specificity": weighted_rate([not i.flagged for i in negatives], [i.weight for i in negatives]),
        "accuracy": weighted_rate([i.flagged == i.crisis for i in in_span], [i.weight for i in in_span]),
    }
    rec, spec = rates[RECALL_RULE], rates["specificity"]
    if rec.value is not None and spec.value is not None:
        lo, hi = (rec.lower + spec.lower) / 2, (rec.upper + spec.upper) / 2
        rates["balanced_accuracy"] = Rate((rec.value + spec.value) / 2, lo, hi, min(rec.n, spec.n))
    else:
        rates["balanced_accuracy"] = Rate(None, 0.0, 1.0, 0)
    double = [i for i in in_span if len(i.levels) >= 2]
    rates["reviewer_agreement_kappa"] = cohen_kappa(
        [(lv[0], lv[1]) for lv in (list(i.levels.values()) for i in double)]
    )
    statistic = 0.0
    for i in crises:
        statistic = cusum.step(statistic, not i.flagged, i.weight)
    return WindowMetrics(
        rates=rates,
        window_start=start,
        window_end=recent[-1].conversation_time if recent else None,
        crisis_in_window=len(win_crises),
        cusum=statistic,
        missed=[i.conversation_id for i in win_crises if not i.flagged],
        by_language=language_recall(win_crises, validated_languages, language_min_effective_n),
        found_by_warning_sign=[i.conversation_id for i in win_crises if not i.flagged and i.warning_sign_review],
        missed_imminent=[
            i.conversation_id for i in win_crises
            if not i.flagged and (i.level in sentinel_levels if i.adjudicated is not None
                                  else any(lv in sentinel_levels for lv in i.levels.values()))
        ],
    )
