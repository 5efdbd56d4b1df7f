"""Interval statistics shared by the evaluator and the model card (pure Python, no heavy imports)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Rate", "wilson_interval", "rate"]

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when n is 0.

    `successes` and `n` may be fractional (an effective count from weighted data).
    """
    if n <= 0:
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Rate:
    """A proportion with its Wilson 95% interval and (effective) n."""

    value: float | None
    lower: float
    upper: float
    n: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return {"value": self.value, "lower": self.lower, "upper": self.upper, "n": self.n}


def rate(successes: float, n: float) -> Rate:
    """successes / n with its interval; value None when n is 0."""
    lo, hi = wilson_interval(successes, n)
    return Rate(value=(successes / n) if n > 0 else None, lower=lo, upper=hi, n=n)
