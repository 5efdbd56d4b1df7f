"""Evaluators: labels joined to predictions, rolling metrics with intervals, CUSUM, the rule table, the
evaluator and its alert-to-action wiring."""
