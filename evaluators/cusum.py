"""Bernoulli CUSUM on misses (Reynolds & Stoumbos): detects a rise of the miss rate from theta0 to theta1."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BernoulliCusum"]


@dataclass(frozen=True, slots=True)
class BernoulliCusum:
    """S_t = max(0, S_{t-1} + w * llr(x_t)); alarm when S_t >= h.

    llr(miss) = ln(theta1/theta0), llr(hit) = ln((1-theta1)/(1-theta0)).
    """

    theta0: float = 0.05
    theta1: float = 0.10
    h: float = 5.0
    max_weight: float = 5.0

    @property
    def miss_step(self) -> float:
        """Log-likelihood ratio of one miss."""
        return math.log(self.theta1 / self.theta0)

    @property
    def hit_step(self) -> float:
        """Log-likelihood ratio of one hit (negative)."""
        return math.log((1 - self.theta1) / (1 - self.theta0))

    def step(self, statistic: float, missed: bool, weight: float = 1.0) -> float:
        """The statistic after one labelled crisis conversation."""
        w = min(max(weight, 0.0), self.max_weight)
        return max(0.0, statistic + w * (self.miss_step if missed else self.hit_step))

    def run(self, misses: list[bool], weights: list[float] | None = None) -> tuple[float, int | None]:
        """(final statistic, index of the first alarm or None) over a sequence."""
        s = 0.0
        first: int | None = None
        for i, missed in enumerate(misses):
            s = self.step(s, missed, 1.0 if weights is None else weights[i])
            if first is None and s >= self.h:
                first = i
        return s, first
