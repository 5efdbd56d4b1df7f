"""Review sampling of unflagged conversations at close.

Every flagged conversation is reviewed (pi = 1). An unflagged one is reviewed with an inclusion
probability that rises through the borderline band below the threshold and never falls below
`pi_floor`. The draw is a hash of the conversation id, so a replay makes the same choice, and the
evaluator can weight each labelled conversation by 1/pi (Horvitz-Thompson).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["SamplingPolicy", "SamplingDecision", "uniform_from_id"]


def uniform_from_id(conversation_id: str, salt: str = "vigil-review-v1") -> float:
    """A deterministic number in [0, 1) from the conversation id."""
    digest = hashlib.sha256(f"{salt}:{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class SamplingDecision:
    """Whether a closed conversation goes to review, why, and with what inclusion probability."""

    pi: float
    reason: str  # flagged | borderline | sampled | disagreement | language | warning_sign
    selected: bool


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    """pi as a function of the conversation's max score (see module docstring)."""

    threshold: float
    pi_floor: float = 0.002
    pi_borderline: float = 0.5
    band: float = 0.5  # the borderline band starts at threshold * (1 - band)
    pi_disagreement: float = 0.5  # a candidate in shadow flagged it, the champion did not (docs/design.md section 8)
    pi_language: float = 0.25  # written mostly in a language the model is not validated for (design section 7)
    pi_warning_sign: float = 1.0  # a user turn held a warning sign the model scored low (models.backup.WarningSigns)

    def inclusion_probability(self, max_score: float, flagged: bool, backup: bool = False) -> tuple[float, str]:
        """(pi, reason) for a conversation."""
        if flagged or max_score >= self.threshold:
            return 1.0, "flagged"
        low = self.threshold * (1.0 - self.band)
        if backup:
            # Scored by the lexicon fallback: never trusted as a negative, reviewed at the borderline rate.
            return max(self.pi_borderline, self.pi_floor), "borderline"
        if max_score >= low:
            frac = (max_score - low) / max(self.threshold - low, 1e-12)
            pi = self.pi_floor + (self.pi_borderline - self.pi_floor) * frac
            return max(self.pi_floor, min(1.0, pi)), "borderline"
        return self.pi_floor, "sampled"

    def decide(self, conversation_id: str, max_score: float, flagged: bool, backup: bool = False,
               disagreement: bool = False, unvalidated_language: bool = False,
               warning_sign: bool = False) -> SamplingDecision:
        """The deterministic review decision for a closed conversation; `disagreement` (a shadow candidate
        flagged it and the champion did not) raises its inclusion probability to at least `pi_disagreement`,
        `unvalidated_language` (written mostly in a language the model is not validated for: its low score says
        nothing) to at least `pi_language`, `warning_sign` (a user turn held a phrase of a warning sign: the model
        scores such turns near zero when nothing else says why, issue 31) to at least `pi_warning_sign`."""
        pi, reason = self.inclusion_probability(max_score, flagged, backup)
        if disagreement and not flagged and pi < self.pi_disagreement:
            pi, reason = self.pi_disagreement, "disagreement"
        if unvalidated_language and not flagged and pi < self.pi_language:
            pi, reason = self.pi_language, "language"
        if warning_sign and not flagged and pi < self.pi_warning_sign:
            pi, reason = self.pi_warning_sign, "warning_sign"
        return SamplingDecision(pi=pi, reason=reason, selected=flagged or uniform_from_id(conversation_id) < pi)
