"""Champion against shadow candidate, on the clinician labels that joined both versions' scores.

Each labelled conversation the candidate scored (every turn: a conversation it skipped turns of is left out)
counts with its Horvitz-Thompson weight w = 1/pi, as in the live window. On those conversations:

- crisis recall of each version, R = sum(w y f) / sum(w y), with a Wilson 95% interval on the Kish effective n;
- the flag rate of ordinary conversations of each, F = sum(w (1-y) f) / sum(w (1-y)), likewise;
- the paired differences (candidate minus champion), D = sum(w y (b - a)) / sum(w y): the same conversations
  under both versions, so only the ones they disagree on move it. Its 95% interval is D +- 1.96 se, with the
  linearised (ratio-estimator) variance se^2 = sum(w^2 y^2 (b - a - D)^2) / (sum w y)^2: the sampling design's
  with-replacement approximation, the same one survey statistics uses for a domain ratio.

Promotion (`vigil model promote`) asks for the recall drop at the upper end of its interval, -lower(D), to be at
most `promote_max_recall_drop` (2 points), on at least `promote_min_crisis` labelled crisis conversations: with
few labels the interval is wide and the rule refuses by itself; with none it would not, hence the floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.window import LabelledConversation, weighted_rate
from vigil_core.stats import Z95, Rate

__all__ = ["Paired", "Comparison", "compare_versions", "paired_difference", "PromotionCheck", "promotion_check",
           "compare_live", "pair"]


@dataclass(frozen=True, slots=True)
class Paired:
    """One labelled conversation under both versions."""

    conversation_id: str
    crisis: bool
    weight: float  # 1 / pi
    champion: bool  # flagged by the champion
    candidate: bool  # flagged by the candidate


@dataclass(frozen=True, slots=True)
class Difference:
    """Candidate minus champion, with its 95% interval."""

    value: float | None
    lower: float
    upper: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return {"value": self.value, "lower": self.lower, "upper": self.upper}


def paired_difference(items: Sequence[Paired], crisis: bool) -> Difference:
    """D = candidate rate - champion rate over the conversations with `crisis` (recall: True; ordinary flag
    rate: False), with the linearised 95% interval (module docstring)."""
    domain = [p for p in items if p.crisis == crisis]
    total = sum(p.weight for p in domain)
    if total <= 0:
        return Difference(None, -1.0, 1.0)
    d = sum(p.weight * (int(p.candidate) - int(p.champion)) for p in domain) / total
    var = sum((p.weight * (int(p.candidate) - int(p.champion) - d)) ** 2 for p in domain) / total**2
    half = Z95 * math.sqrt(var)
    return Difference(d, max(-1.0, d - half), min(1.0, d + half))


@dataclass(frozen=True)
class Comparison:
    """Both versions on the same labelled conversations."""

    champion: str
    candidate: str
    n: int
    n_crisis: int
    recall_champion: Rate
    recall_candidate: Rate
    recall_difference: Difference
    flag_rate_champion: Rate
    flag_rate_candidate: Rate
    flag_rate_difference: Difference
    disagreements: int
    excluded_skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the keys of `vigil model compare --json`)."""
        return {
            "champion": self.champion, "candidate": self.candidate, "n": self.n, "n_crisis": self.n_crisis,
            "recall": {"champion": self.recall_champion.to_dict(), "candidate": self.recall_candidate.to_dict(),
                       "difference": self.recall_difference.to_dict()},
            "flag_rate": {"champion": self.flag_rate_champion.to_dict(),
                          "candidate": self.flag_rate_candidate.to_dict(),
                          "difference": self.flag_rate_difference.to_dict()},
            "disagreements": self.disagreements, "excluded_skipped": self.excluded_skipped,
        }


def compare_versions(items: Sequence[Paired], champion: str, candidate: str, excluded_skipped: int = 0) -> Comparison:
    """The comparison of two versions on paired, labelled conversations."""
    crisis = [p for p in items if p.crisis]
    ordinary = [p for p in items if not p.crisis]

    def rate_of(group: list[Paired], which: str) -> Rate:
        return weighted_rate([getattr(p, which) for p in group], [p.weight for p in group])

    return Comparison(
        champion=champion, candidate=candidate, n=len(items), n_crisis=len(crisis),
        recall_champion=rate_of(crisis, "champion"), recall_candidate=rate_of(crisis, "candidate"),
        recall_difference=paired_difference(items, True),
        flag_rate_champion=rate_of(ordinary, "champion"), flag_rate_candidate=rate_of(ordinary, "candidate"),
        flag_rate_difference=paired_difference(items, False),
        disagreements=sum(p.champion != p.candidate for p in items), excluded_skipped=excluded_skipped,
    )


def pair(labelled: Sequence[LabelledConversation], candidate_flags: dict[str, bool]) -> list[Paired]:
    """Labelled conversations joined to the candidate's verdicts (those it has none for are left out)."""
    return [Paired(c.conversation_id, c.crisis, c.weight, c.flagged, candidate_flags[c.conversation_id])
            for c in labelled if c.conversation_id in candidate_flags]


@dataclass(frozen=True, slots=True)
class PromotionCheck:
    """Whether a comparison allows promotion, and why not."""

    allowed: bool
    reason: str
    recall_drop_upper: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"allowed": self.allowed, "reason": self.reason, "recall_drop_upper": self.recall_drop_upper}


def promotion_check(comparison: Comparison, max_recall_drop: float, min_crisis: int) -> PromotionCheck:
    """The promotion rule (module docstring)."""
    if comparison.n_crisis < min_crisis:
        return PromotionCheck(False, f"{comparison.n_crisis} labelled crisis conversations scored by both "
                                     f"versions; promotion needs at least {min_crisis}", None)
    drop_upper = -comparison.recall_difference.lower
    if drop_upper > max_recall_drop:
        return PromotionCheck(False, f"the candidate's recall may be up to {100 * drop_upper:.1f} points lower "
                                     f"(95% interval); at most {100 * max_recall_drop:.1f} allowed", drop_upper)
    return PromotionCheck(True, f"recall drop at most {100 * max(drop_upper, 0.0):.1f} points at the 95% upper "
                                f"bound, on {comparison.n_crisis} crisis conversations", drop_upper)


def compare_live(client: Any, prefix: str, label_wait_s: float, candidate: str | None = None,
                 since: float = 0.0) -> Comparison | None:
    """The comparison of the live champion with `candidate` (default: the one in shadow) on the labels joined
    so far; None when no candidate is named."""
    from evaluators.store import EvaluatorStore
    from vigil_core.model_record import ModelRecord, ShadowStore

    live = ModelRecord(client, prefix).read()
    candidate = candidate or live.shadow
    if not candidate:
        return None
    labelled = EvaluatorStore(client, prefix, label_wait_s).labelled(since)
    readings = ShadowStore(client, prefix, label_wait_s).read_many([c.conversation_id for c in labelled], candidate)
    flags = {cid: bool(r.flagged) for cid, r in readings.items() if r.flagged is not None and not r.skipped}
    skipped = sum(1 for r in readings.values() if r.skipped)
    return compare_versions(pair(labelled, flags), live.champion, candidate, excluded_skipped=skipped)
