"""`vigil incidents report ID`: the post-incident report in Markdown.

The timeline is reconstructed from the `safety.incidents` events (the record), the metrics before, at and
after the trigger come from the evaluator's history, and the halt's history from the audit stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from incidents.store import SEVERITY_PLAN, Incident
from vigil_core.rule_names import RECALL_RULE

__all__ = ["render_report"]


def _recall_line(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    r = entry.get("rates", {}).get(RECALL_RULE, {})
    if r.get("value") is None:
        return f"no estimate (n {r.get('n', 0):.1f})"
    return f"{r['value']:.3f} [{r['lower']:.3f}, {r['upper']:.3f}], effective n {r['n']:.1f}"


def render_report(incident: Incident, events: list[dict[str, Any]], history: list[dict[str, Any]],
                  halt_audit: list[dict[str, str]]) -> str:
    """The report for one incident. `events` are its timeline entries (from the topic), oldest first."""
    response, team = SEVERITY_PLAN[incident.severity]
    opened = datetime.fromisoformat(incident.opened_at)
    trigger_ts = opened.timestamp()
    before = [h for h in history if h["at"] < trigger_ts - 1e-6]
    after = [h for h in history if h["at"] > trigger_ts + 1e-6]
    opened_event = next((e for e in events if e["change"] == "opened"), None)
    at_trigger = (opened_event or {}).get("detail", {})
    ack = next((e for e in events if e["change"] == "acknowledged"), None)
    lines = [
        f"# Post-incident report: {incident.id}",
        "",
        "## Summary",
        f"- **{incident.title}**",
        f"- Severity **{incident.severity}** (respond within {int(response.total_seconds() // 60)} min; {team}); "
        f"type {incident.type}; dedup key `{incident.dedup_key}`",
        f"- State: **{incident.state}**; owner: {incident.owner or 'unassigned'}; escalation level "
        f"{incident.escalation_level}",
        f"- Opened {incident.opened_at}; acknowledged {incident.acknowledged_at or 'never'}; "
        f"resolved {incident.resolved_at or 'not yet'}",
    ]
    if ack is not None:
        delay = datetime.fromisoformat(ack["at"]) - opened
        lines.append(f"- Time to acknowledge: {delay.total_seconds() / 60:.1f} min "
                     f"({'within' if delay <= response else 'over'} the {int(response.total_seconds() // 60)} min "
                     "response time)")
    lines += ["", "## Timeline", "", "| time (UTC) | change | by | detail |", "|---|---|---|---|"]
    for e in events:
        detail = e.get("detail", {}) or {}
        text = ", ".join(f"{k}={v}" for k, v in detail.items()
                         if k in ("text", "reason", "level", "halt_version", "rule", "state", "value", "repeat"))
        lines.append(f"| {e['at']} | {e['change']} | {e['by']} | {text} |")
    lines += [
        "", "## Metrics before, at and after the trigger", "",
        f"- Before: crisis recall {_recall_line(before[-1] if before else None)}",
        f"- At the trigger: rule `{at_trigger.get('rule', '-')}` {at_trigger.get('state', '')}, value "
        f"{at_trigger.get('value')}, interval [{at_trigger.get('lower')}, {at_trigger.get('upper')}], "
        f"n {at_trigger.get('n')}",
        f"- After: crisis recall {_recall_line(after[-1] if after else None)}",
    ]
    if at_trigger.get("evidence"):
        lines.append(f"- Evidence (missed conversations): {', '.join(at_trigger['evidence'][:20])}")
    lines += ["", "## Halt history", ""]
    if halt_audit:
        lines += ["| time (UTC) | action | who | version | reason |", "|---|---|---|---|---|"]
        for h in halt_audit:
            lines.append(f"| {h.get('at', '')} | {h.get('action', '')} | {h.get('who', '')} | {h.get('version', '')} "
                         f"| {h.get('reason', '')} |")
    else:
        lines.append("No halt change is linked to this incident.")
    actions = [e for e in events if e["change"] in ("escalated", "acknowledged", "mitigated", "resolved")
               or (e["change"] == "note" and (e.get("detail") or {}).get("halt_version"))]
    lines += ["", "## Actions taken", ""]
    lines += [f"- {e['at']}: {e['change']} by {e['by']}" for e in actions] or ["- none recorded"]
    lines += [
        "", "## Post-mortem agenda", "",
        "1. **Timeline**: confirm the sequence above; add what people did outside Vigil.",
        "2. **Root cause**: why did detection fail (model drift, new language or slang, broken model version, "
        "pipeline fault)? Which conversations were missed (evidence above) and why?",
        "3. **Response effectiveness**: time to detect, to acknowledge, to halt, to recover; did escalation reach "
        "the right people?",
        "4. **Prevention**: model, data, threshold, monitoring or process changes that stop a repeat.",
        "5. **Action items**: | item | owner | due date |",
        "   |---|---|---|",
        "   | | | |",
        "6. **Follow-up**: clinical follow-up of the affected users through the care team; review date for "
        "the action items.",
        "",
    ]
    return "\n".join(lines)
