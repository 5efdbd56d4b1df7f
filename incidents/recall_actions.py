"""What Vigil does when the loop's own numbers say something is wrong: the actions wired to the evaluator's alerts
(a halt, incidents), the escalation timer and the scorer watchdog. The other responders live beside it in
`incidents`: a person at risk and a harmful reply (`urgent.py`), urgent cases (`cases.py`), the evaluator's
heartbeat (`watch.py`); all share one periodic-thread helper (`periodic.py`).

They run inside `vigil evaluate` (one process fewer for operators to forget); several evaluator
processes do not double-act: a transition is handed to exactly one of them, an incident has one dedup
key, and the halt is one record.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

import redis

from evaluators.rules import Thresholds
from incidents.periodic import Periodic
from safety_gate.halt import HaltStore
from safety_gate.heartbeat import heartbeat_key
from vigil_core.settings import Settings

__all__ = ["ActionEngine", "IncidentDesk"]

log = logging.getLogger(__name__)

ACTOR = "vigil-evaluator"
# The dedup key of the incident the scorer watchdog opens (its halt is not a rule of the table).
SCORER_FAILURE = "scorer-detection-failure"
BACKUP_IN_USE = "backup-scorer-in-use"


class IncidentDesk(Protocol):
    """What the actions need of the incident engine (`incidents.service.IncidentService` is the real one)."""

    def open(self, severity: str, title: str, dedup_key: str, type_: str = "safety", by: str = "vigil",
             detail: dict[str, Any] | None = None, incident_id: str | None = None) -> tuple[Any, bool]:
        """Open an incident, or add to the open one with the same dedup key; (incident, created)."""
        ...

    def note(self, incident_id: str, by: str, text: str, **detail: Any) -> Any:
        """Add a note to an incident's timeline."""
        ...

    def find_open(self, dedup_key: str) -> str | None:
        """The id of the open incident with this dedup key, if any."""
        ...

    def new_id(self) -> str:
        """A fresh incident id."""
        ...

    def escalate_overdue(self) -> list[Any]:
        """Escalate every open, unacknowledged incident past its response deadline."""
        ...

    def start(self) -> None:
        """Start delivering notifications."""
        ...

    def stop(self) -> None:
        """Stop delivering notifications and release connections."""
        ...


class ActionEngine:
    """Turns alerts into halts and incidents; runs the escalation timer and the scorer watchdog.

    Example:
        engine = ActionEngine(settings, IncidentService(settings, client), client)
        evaluator = Evaluator(settings, on_alert=engine.handle)
    """

    def __init__(self, settings: Settings, manager: IncidentDesk, client: redis.Redis,
                 watchdog: bool = True, rules: Thresholds | None = None) -> None:
        self.settings = settings
        self.rules = rules or Thresholds.load(settings.thresholds_file)
        self._r = client
        self.manager = manager
        self.halt = HaltStore(self._r, settings.redis_prefix)
        self.watchdog = watchdog
        self._timer = Periodic("escalation and watchdog", self.tick)
        self._started = time.monotonic()
        self._last_lag: int | None = None
        self._backup_since: dict[str, float] = {}  # scorer instance -> when its backup share first reached the limit

    # -- alerts -------------------------------------------------------------------------------------
    def handle(self, alert: Any) -> None:
        """Act on one rule transition."""
        a = alert.to_dict() if hasattr(alert, "to_dict") else dict(alert)
        rule, state = a["rule"], a["state"]
        if state == "OK":
            self._recovered(rule, a)
            return
        action = self.rules.action(rule, state)
        if action is None:
            return
        detail = {"rule": rule, "state": state, "value": a.get("value"), "lower": a.get("lower"),
                  "upper": a.get("upper"), "n": a.get("n"), "evidence": a.get("evidence", [])[:50],
                  "window_start": a.get("window_start"), "window_end": a.get("window_end"),
                  "metrics": a.get("metrics", {})}
        if action.halt:
            self._halt_and_page(action.title, action.dedup, detail, action.type)
        else:
            self.manager.open(action.severity, action.title, action.dedup, action.type, by=ACTOR, detail=detail)

    def _halt_and_page(self, title: str, dedup: str, detail: dict[str, Any], type_: str = "safety") -> None:
        incident_id = self.manager.find_open(dedup) or self.manager.new_id()
        value = detail.get("value")
        reason = f"{title} (value {value:.3f})" if isinstance(value, int | float) else title
        # The halt first: nothing after it (Kafka, notifiers) can delay it.
        version = self.halt.trip(by=ACTOR, reason=reason, incident_id=incident_id,
                                 metrics={k: detail.get(k) for k in ("rule", "value", "lower", "upper", "n")})
        incident, created = self.manager.open("P0", title, dedup, type_, by=ACTOR,
                                              detail={**detail, "halt_version": version}, incident_id=incident_id)
        self.manager.note(incident.id, ACTOR, f"safety halt tripped (halt version {version})", halt_version=version)
        log.error("SAFETY HALT: %s (incident %s, halt version %d)", reason, incident.id, version)

    def _recovered(self, rule: str, a: dict[str, Any]) -> None:
        for dedup in sorted(self.rules.dedup_keys(rule)):
            incident_id = self.manager.find_open(dedup)
            if incident_id:
                self.manager.note(incident_id, ACTOR, f"{rule} back to OK (value {a.get('value')}); this resolves "
                                  "nothing by itself", metrics=a.get("metrics", {}))

    # -- timers -------------------------------------------------------------------------------------
    def tick(self) -> None:
        """One round of the escalation timer and the watchdog."""
        self.manager.escalate_overdue()
        if self.watchdog:
            self._watch_scorer()
            self._watch_backup()

    def _watch_backup(self) -> None:
        """A P1 when a scorer instance has scored mostly with the backup lexicon for too long."""
        s = self.settings
        now = time.monotonic()
        prefix = heartbeat_key(s.redis_prefix, "scorer") + ":"
        for key in self._r.scan_iter(match=prefix + "*", count=100):
            instance = key.decode()[len(prefix):]
            if instance == "owners":
                continue
            try:
                share = json.loads(self._r.get(key) or b"{}").get("backup_share")
            except ValueError:
                continue
            if share is None:
                continue  # nothing scored since its last beat: no evidence either way
            if float(share) < s.backup_share_limit:
                self._backup_since.pop(instance, None)
                continue
            since = self._backup_since.setdefault(instance, now)
            if now - since >= s.backup_alert_after_s and self.manager.find_open(BACKUP_IN_USE) is None:
                self.manager.open("P1", f"Backup scorer in use: the crisis model has not scored "
                                  f"{float(share):.0%} of turns for {s.backup_alert_after_s:.0f} s", BACKUP_IN_USE,
                                  "functionality", by=ACTOR,
                                  detail={"rule": "backup_share", "value": float(share), "instance": instance})

    def _watch_scorer(self) -> None:
        # Give scorers one TTL after our start to appear before calling them dead.
        if time.monotonic() - self._started < self.settings.heartbeat_ttl_s:
            return
        raw = self._r.get(heartbeat_key(self.settings.redis_prefix, "scorer"))
        if raw is None:
            self._halt_and_page("Crisis detection failure: scorer heartbeat stale", SCORER_FAILURE,
                                {"rule": "scorer_heartbeat", "state": "CRITICAL", "value": None})
            return
        try:
            lag = int(json.loads(raw).get("lag", 0))
        except (ValueError, TypeError):
            lag = 0
        # Two readings in a row above the limit, the second no better: stuck, not a passing burst.
        limit = self.settings.max_scorer_lag
        stuck = lag > limit and self._last_lag is not None and self._last_lag > limit and lag >= self._last_lag
        self._last_lag = lag
        if stuck:
            self._halt_and_page("Crisis detection failure: scorer stuck with growing lag", SCORER_FAILURE,
                                {"rule": "scorer_lag", "state": "CRITICAL", "value": float(lag)})

    def start(self) -> None:
        """Start the outbox dispatcher and the timer thread."""
        self.manager.start()
        self._timer.start(self.settings.escalation_check_s)

    def stop(self) -> None:
        """Stop the threads (queued notifications stay in the outbox)."""
        self._timer.stop()
        self.manager.stop()
