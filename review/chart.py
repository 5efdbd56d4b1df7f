"""The overview's SVG chart of crisis recall over time, with the rule table's warning and critical lines."""

from __future__ import annotations

from typing import Any

from vigil_core.rule_names import RECALL_RULE

__all__ = ["recall_chart"]

# The chart's floor: recall below 50% is drawn at the bottom edge (a halt trips long before).
CHART_FLOOR = 0.5


def recall_chart(history: list[dict[str, Any]], warning_below: float, critical_below: float, width: int = 640,
                 height: int = 200) -> dict[str, Any]:
    """Points of an SVG line chart of crisis recall and its interval, with the two threshold lines."""
    pts = [(h["at"], h["rates"].get(RECALL_RULE, {})) for h in history]
    pts = [(t, r) for t, r in pts if r.get("value") is not None]

    def y(v: float) -> float:
        return height - (max(v, CHART_FLOOR) - CHART_FLOOR) / (1 - CHART_FLOOR) * height

    lines = {"y_warning": y(warning_below), "y_critical": y(critical_below), "warning_below": warning_below,
             "critical_below": critical_below}
    if not pts:
        return {"width": width, "height": height, "line": "", "band": "", **lines}
    t0, t1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)

    def x(t: float) -> float:
        return (t - t0) / (t1 - t0) * width

    line = " ".join(f"{x(t):.1f},{y(r['value']):.1f}" for t, r in pts)
    band = " ".join(f"{x(t):.1f},{y(r['upper']):.1f}" for t, r in pts) + " " + " ".join(
        f"{x(t):.1f},{y(r['lower']):.1f}" for t, r in reversed(pts))
    return {"width": width, "height": height, "line": line, "band": band, **lines}
