"""Evaluators: label joins, review sampling weights, rolling metrics with intervals, alert rules."""

from evaluators.stats import Rate, rate, wilson_interval

__all__ = ["Rate", "rate", "wilson_interval"]
