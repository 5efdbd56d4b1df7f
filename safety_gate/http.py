"""`vigil gate serve`: the gate over HTTP for services not written in Python.

GET /v1/gate[?conversation_id=ID&locale=L]
              -> 200 with the decision when allowed; 503 with the decision and the fallback when not: the crisis
                 resources when halted, the handoff message (`"handoff": true`) for a conversation with a human.
GET /healthz  -> 200 while the gate's refresher runs and its view is younger than `HEALTHZ_STALE_FACTOR` times
                 the staleness bound; 503 otherwise (restart me). Both report the view's age. The gate itself
                 may answer halted either way.
GET /v1/status -> the public status of Vigil's components for a status page (the incident plan's "communicate"
                 step): AI responses, crisis monitoring, clinical review, each `operational`, `degraded` or `halted`
                 with the time it has been so (as this gate saw it; a halt's own start time for AI responses), and
                 the worst of them. No reasons, no incident ids, no internal detail; cacheable for 10 s.
GET /metrics  -> Prometheus metrics.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from safety_gate.fallback import FALLBACK_MODEL_VERSION, HANDOFF_MODEL_VERSION
from safety_gate.gate import Gate
from safety_gate.metrics import GateCollector
from vigil_core.build import register_build_info

__all__ = ["GateHTTPServer", "make_server", "StatusPage"]

log = logging.getLogger(__name__)
# /healthz fails once the view is this many staleness bounds old: a gate that cannot refresh for that long
# (a dead thread, a wedged connection) is restarted by its supervisor; a Redis outage also trips it, and a
# restart then costs nothing (the gate answers halted either way).
HEALTHZ_STALE_FACTOR = 6
# A connection that sends nothing for this long is closed: each holds a thread, and 500 half-open connections held
# 500 threads (issue 35). An AI service's keep-alive connection asks far more often than this.
IDLE_TIMEOUT_S = 30.0


class _Handler(BaseHTTPRequestHandler):
    server: GateHTTPServer
    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle: split header/body writes on a keep-alive connection meet the
    # peer's delayed ACK and cost ~40 ms a request.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout_s)  # an idle read ends the connection and its thread

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        if url.path == "/v1/gate":
            query = parse_qs(url.query)
            cid = query.get("conversation_id", [None])[0]
            decision = self.server.gate.check(conversation_id=cid)
            body = decision.to_dict()
            if decision.allowed:
                self._send(200, json.dumps(body).encode())
            else:
                locale = query.get("locale", ["en-US"])[0]
                gate = self.server.gate
                body["fallback"] = gate.handoff_message(locale) if decision.handoff else gate.fallback(locale)
                # publish the served reply with this model_version: Vigil does not judge its own text as the AI's
                body["model_version"] = HANDOFF_MODEL_VERSION if decision.handoff else FALLBACK_MODEL_VERSION
                self._send(503, json.dumps(body).encode())
        elif url.path == "/healthz":
            gate = self.server.gate
            age = gate.view_age_s
            healthy = gate.refresher_alive and age <= HEALTHZ_STALE_FACTOR * gate.staleness_s
            body = {"status": "ok" if healthy else "unhealthy", "refresher_alive": gate.refresher_alive,
                    "view_age_s": round(age, 3) if age != float("inf") else None,
                    "staleness_s": gate.staleness_s, "refresh_failures": gate.refresh_failures}
            self._send(200 if healthy else 503, json.dumps(body).encode())
        elif url.path == "/v1/status":
            self._send(200, json.dumps(self.server.status_page.read()).encode(),
                       cache=f"public, max-age={STATUS_MAX_AGE_S}")
        elif url.path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b'{"error": "not found"}')


STATUS_MAX_AGE_S = 10
COMPONENT_NAMES = {"ai_responses": "AI responses", "crisis_monitoring": "Crisis monitoring",
                   "clinical_review": "Clinical review"}
_ORDER = {"operational": 0, "degraded": 1, "halted": 2}


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class StatusPage:
    """The public status, with since when each component is in its state (tracked from this gate's start)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._since: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def read(self) -> dict[str, object]:
        """`{"status": worst, "components": [{"id", "name", "status", "since"}], "updated_at"}`."""
        now = time.time()
        states = self.gate.status()
        record = self.gate.record
        components = []
        with self._lock:
            for cid, state in states.items():
                known = self._since.get(cid)
                if known is None or known[0] != state:
                    known = self._since[cid] = (state, _iso(now))
                since = known[1]
                if cid == "ai_responses" and state == "halted" and record is not None and record.halted \
                        and record.since:
                    since = record.since  # the halt's own start, whoever saw it first
                components.append({"id": cid, "name": COMPONENT_NAMES[cid], "status": state, "since": since})
        worst = max(states.values(), key=lambda st: _ORDER[st])
        return {"status": worst, "components": components, "updated_at": _iso(now)}


class GateHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding one shared Gate."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], gate: Gate, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        super().__init__(address, _Handler)
        self.gate = gate
        self.idle_timeout_s = idle_timeout_s
        self.status_page = StatusPage(gate)
        self.registry = CollectorRegistry()
        self.registry.register(GateCollector(gate))
        register_build_info(self.registry)


def make_server(gate: Gate, host: str = "127.0.0.1", port: int = 0,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> GateHTTPServer:
    """A server bound to host:port (0: a free port); call `serve_forever()`."""
    return GateHTTPServer((host, port), gate, idle_timeout_s)
