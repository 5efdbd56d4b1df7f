"""Prometheus metrics of a gate: halt state, halt changes seen, decisions by outcome (allowed, halted, handoff),
conversations handed off, view age."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from safety_gate.gate import Gate

__all__ = ["GateCollector"]


class GateCollector(Collector):
    """Reads the gate's counters at scrape time, so `check()` pays nothing for metrics."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Yield the gate's metric families."""
        gate = self._gate
        record = gate.record
        halted = GaugeMetricFamily("vigil_halt_state", "1 when the halt record reads HALTED (or is missing)")
        halted.add_metric([], 1.0 if record is None or record.halted else 0.0)
        yield halted
        version = GaugeMetricFamily("vigil_halt_version", "version of the halt record last read")
        version.add_metric([], float(record.version if record else 0))
        yield version
        changes = CounterMetricFamily("vigil_halt_changes", "halt record changes seen by this gate")
        changes.add_metric([], float(gate.changes_seen))
        yield changes
        decisions = CounterMetricFamily("vigil_gate_decisions", "gate decisions by outcome", labels=["outcome"])
        decisions.add_metric(["allowed"], float(gate.allowed_count))
        decisions.add_metric(["halted"], float(gate.denied_count))
        decisions.add_metric(["handoff"], float(gate.handoff_count))
        yield decisions
        handed = GaugeMetricFamily("vigil_gate_conversations_handed_off",
                                   "conversations under handoff to a human in the gate's view")
        handed.add_metric([], float(gate.handoffs))
        yield handed
        age = GaugeMetricFamily("vigil_gate_view_age_seconds", "seconds since the gate last read the halt record")
        age.add_metric([], min(gate.view_age_s, 1e9))
        yield age
