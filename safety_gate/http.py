"""`vigil gate serve`: the gate over HTTP for services not written in Python.

GET /v1/gate  -> 200 with the decision when allowed; 503 with the decision and the fallback when not.
GET /healthz  -> 200 while the server runs (the gate itself may still answer halted).
GET /metrics  -> Prometheus metrics.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from safety_gate.gate import Gate
from safety_gate.metrics import GateCollector

__all__ = ["GateHTTPServer", "make_server"]

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: GateHTTPServer
    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle: split header/body writes on a keep-alive connection meet the
    # peer's delayed ACK and cost ~40 ms a request.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        if url.path == "/v1/gate":
            decision = self.server.gate.check()
            body = decision.to_dict()
            if decision.allowed:
                self._send(200, json.dumps(body).encode())
            else:
                locale = parse_qs(url.query).get("locale", ["en-US"])[0]
                body["fallback"] = self.server.gate.fallback(locale)
                self._send(503, json.dumps(body).encode())
        elif url.path == "/healthz":
            self._send(200, b'{"status": "ok"}')
        elif url.path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b'{"error": "not found"}')


class GateHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding one shared Gate."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], gate: Gate) -> None:
        super().__init__(address, _Handler)
        self.gate = gate
        self.registry = CollectorRegistry()
        self.registry.register(GateCollector(gate))


def make_server(gate: Gate, host: str = "127.0.0.1", port: int = 0) -> GateHTTPServer:
    """A server bound to host:port (0: a free port); call `serve_forever()`."""
    return GateHTTPServer((host, port), gate)
