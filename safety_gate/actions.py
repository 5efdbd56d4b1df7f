"""Actions wired to the evaluator's alerts, the escalation timer and the scorer watchdog.

They run inside `vigil evaluate` (one process fewer for operators to forget); several evaluator
processes do not double-act: a transition is handed to exactly one of them, an incident has one dedup
key, and the halt is one record.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from pipeline.settings import Settings
from safety_gate.halt import HaltStore
from safety_gate.heartbeat import heartbeat_key
from safety_gate.manager import IncidentManager

__all__ = ["ActionEngine", "RULE_ACTIONS"]

log = logging.getLogger(__name__)

ACTOR = "vigil-evaluator"
DETECTION_FAILURE = "crisis-detection-failure"

# rule -> state -> (severity, type, title, dedup key, trips the halt)
RULE_ACTIONS: dict[str, dict[str, tuple[str, str, str, str, bool]]] = {
    "crisis_recall": {
        "CRITICAL": ("P0", "safety", "Crisis detection failure: crisis recall below 90%", DETECTION_FAILURE, True),
        "WARNING": ("P1", "safety", "Clinical review: crisis recall below 95%", "crisis-recall-warning", False),
        "INSUFFICIENT_DATA": ("P2", "monitoring", "Too few labelled crisis conversations to measure recall",
                              "crisis-recall-insufficient-data", False),
    },
    "crisis_recall_cusum": {
        "CRITICAL": ("P0", "safety", "Crisis detection failure: CUSUM on missed crises crossed its limit",
                     DETECTION_FAILURE, True),
    },
    # A missed imminent conversation is a crisis detection failure: it opens (or adds to) the same P0,
    # for clinical review at once, without a halt; each further miss goes on that incident's timeline.
    "sentinel": {
        "CRITICAL": ("P0", "safety", "Crisis detection failure: a conversation labelled imminent was not flagged",
                     DETECTION_FAILURE, False),
    },
    "ai_latency_p95_ms": {
        "WARNING": ("P1", "performance", "AI response time p95 above 5 s", "ai-latency", False),
        "CRITICAL": ("P1", "performance", "AI response time p95 above 10 s", "ai-latency", False),
    },
    "ai_error_rate": {
        "WARNING": ("P1", "functionality", "AI error rate above 0.5%", "ai-error-rate", False),
        "CRITICAL": ("P1", "functionality", "AI error rate above 1%", "ai-error-rate", False),
    },
    "user_satisfaction": {
        "WARNING": ("P2", "user experience", "User satisfaction below 7", "user-satisfaction", False),
        "CRITICAL": ("P2", "user experience", "User satisfaction below 5", "user-satisfaction", False),
    },
}


class ActionEngine:
    """Turns alerts into halts and incidents; runs the escalation timer and the scorer watchdog."""

    def __init__(self, settings: Settings, manager: IncidentManager | None = None, watchdog: bool = True) -> None:
        self.settings = settings
        self._r = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5)
        self.manager = manager or IncidentManager(settings, self._r)
        self.halt = HaltStore(self._r, settings.redis_prefix)
        self.watchdog = watchdog
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._last_lag: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionEngine:
        """The engine `vigil evaluate` runs."""
        return cls(settings)

    # -- alerts -------------------------------------------------------------------------------------
    def handle(self, alert: Any) -> None:
        """Act on one rule transition."""
        a = alert.to_dict() if hasattr(alert, "to_dict") else dict(alert)
        rule, state = a["rule"], a["state"]
        if state == "OK":
            self._recovered(rule, a)
            return
        action = RULE_ACTIONS.get(rule, {}).get(state)
        if action is None:
            return
        severity, type_, title, dedup, trips = action
        detail = {"rule": rule, "state": state, "value": a.get("value"), "lower": a.get("lower"),
                  "upper": a.get("upper"), "n": a.get("n"), "evidence": a.get("evidence", [])[:50],
                  "window_start": a.get("window_start"), "window_end": a.get("window_end"),
                  "metrics": a.get("metrics", {})}
        if trips:
            self._halt_and_page(title, dedup, detail)
        else:
            self.manager.open(severity, title, dedup, type_, by=ACTOR, detail=detail)

    def _halt_and_page(self, title: str, dedup: str, detail: dict[str, Any]) -> None:
        from safety_gate.incidents import new_incident_id

        incident_id = self.manager.store.find_open(dedup) or new_incident_id(self.manager.clock())
        value = detail.get("value")
        reason = f"{title} (value {value:.3f})" if isinstance(value, int | float) else title
        # The halt first: nothing after it (Kafka, notifiers) can delay it.
        version = self.halt.trip(by=ACTOR, reason=reason, incident_id=incident_id,
                                 metrics={k: detail.get(k) for k in ("rule", "value", "lower", "upper", "n")})
        incident, created = self.manager.open("P0", title, dedup, "safety", by=ACTOR,
                                              detail={**detail, "halt_version": version}, incident_id=incident_id)
        self.manager.note(incident.id, ACTOR, f"safety halt tripped (halt version {version})", halt_version=version)
        log.error("SAFETY HALT: %s (incident %s, halt version %d)", reason, incident.id, version)

    def _recovered(self, rule: str, a: dict[str, Any]) -> None:
        dedups = {act[3] for act in RULE_ACTIONS.get(rule, {}).values()}
        for dedup in dedups:
            incident_id = self.manager.store.find_open(dedup)
            if incident_id:
                self.manager.note(incident_id, ACTOR, f"{rule} back to OK (value {a.get('value')}); this resolves "
                                  "nothing by itself", metrics=a.get("metrics", {}))

    # -- timers -------------------------------------------------------------------------------------
    def tick(self) -> None:
        """One round of the escalation timer and the watchdog."""
        self.manager.escalate_overdue()
        if self.watchdog:
            self._watch_scorer()

    def _watch_scorer(self) -> None:
        # Give scorers one TTL after our start to appear before calling them dead.
        if time.monotonic() - self._started < self.settings.heartbeat_ttl_s:
            return
        raw = self._r.get(heartbeat_key(self.settings.redis_prefix, "scorer"))
        if raw is None:
            self._halt_and_page("Crisis detection failure: scorer heartbeat stale", "scorer-detection-failure",
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
            self._halt_and_page("Crisis detection failure: scorer stuck with growing lag", "scorer-detection-failure",
                                {"rule": "scorer_lag", "state": "CRITICAL", "value": float(lag)})

    def start(self) -> None:
        """Start the outbox dispatcher and the timer thread."""
        self.manager.outbox.start()

        def loop() -> None:
            while not self._stop.wait(self.settings.escalation_check_s):
                try:
                    self.tick()
                except Exception as exc:  # noqa: BLE001 - the timer must keep running
                    log.warning("escalation/watchdog round failed: %s", exc)

        self._thread = threading.Thread(target=loop, name="vigil-actions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the threads (queued notifications stay in the outbox)."""
        self._stop.set()
        self.manager.outbox.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.manager.close()
