"""Handlers of `vigil incidents ...`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from incidents.service import IncidentService
from incidents.store import Incident
from kafka_io import read_all
from vigil_core.contracts import IncidentEvent, parse_event
from vigil_core.errors import ContractError
from vigil_core.settings import Settings

__all__ = ["incidents_command", "incident_events", "build_report"]


def incident_events(settings: Settings, incident_id: str | None = None) -> list[IncidentEvent]:
    """Incident events from the `safety.incidents` topic, in time order."""
    events = []
    for rec in read_all(settings, settings.topic_incidents):
        try:
            ev = parse_event(rec.value, accept=frozenset({"safety.incident/1"}))
        except ContractError:
            continue
        if isinstance(ev, IncidentEvent) and (incident_id is None or ev.incident_id == incident_id):
            events.append(ev)
    events.sort(key=lambda e: e.at)
    return events


def build_report(settings: Settings, manager: IncidentService, incident_id: str) -> str:
    """The Markdown report of an incident (timeline from the topic, view as fallback)."""
    from evaluators.store import EvaluatorStore
    from incidents.report import render_report

    incident = manager.store.get(incident_id)
    try:
        events: list[dict[str, Any]] = [
            {"at": e.at.isoformat(), "change": e.change, "by": e.by, "detail": e.detail}
            for e in incident_events(settings, incident_id)
        ]
    except Exception:  # noqa: BLE001 - the broker may be down; the Redis view holds the same timeline
        events = []
    if not events:
        events = list(incident.timeline)
    history = EvaluatorStore(manager._r, settings.redis_prefix, settings.label_wait_s).history()
    from safety_gate.halt import HaltStore

    audit = [a for a in HaltStore(manager._r, settings.redis_prefix).audit(10000)
             if a.get("action", "").startswith("halt.") and a.get("at", "") >= incident.opened_at[:19]
             or a.get("incident_id") == incident.id]
    return render_report(incident, events, history, audit)


def _line(i: Incident) -> str:
    return f"{i.id}  {i.severity}  {i.state:<12}  {i.opened_at[:19]}  {i.title}"


def incidents_command(args: argparse.Namespace, settings: Settings) -> int:
    """list | show | ack | note | resolve | report | rebuild."""
    manager = IncidentService(settings)
    try:
        cmd = args.incidents_command
        if cmd == "list":
            items = manager.store.list(only_open=args.open)
            if args.json:
                print(json.dumps([{k: v for k, v in i.to_dict().items() if k != "timeline"} for i in items]))
            else:
                for i in items:
                    print(_line(i))
        elif cmd == "show":
            print(json.dumps(manager.store.get(args.id).to_dict(), indent=2, default=str))
        elif cmd in ("ack", "note", "resolve"):
            changed = (manager.acknowledge(args.id, args.by) if cmd == "ack"
                       else manager.note(args.id, args.by, args.text) if cmd == "note"
                       else manager.resolve(args.id, args.by, args.reason))
            print(json.dumps(changed.to_dict(), default=str) if args.json else _line(changed))
        elif cmd == "report":
            text = build_report(settings, manager, args.id)
            if args.out:
                Path(args.out).write_text(text)
                print(args.out)
            else:
                print(text)
        elif cmd == "rebuild":
            print(f"{manager.rebuild(incident_events(settings))} events applied")
        return 0
    finally:
        manager.close()
