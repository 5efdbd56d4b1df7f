"""Handlers of `vigil halt status` and `vigil gate serve` (the manual changes, which authenticate people, are in
vigil/halt.py)."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from safety_gate.fallback import FallbackMessages
from safety_gate.gate import Gate
from safety_gate.halt import HaltStore
from vigil_core.settings import Settings

__all__ = ["halt_status", "gate_serve"]


def _store(settings: Settings) -> HaltStore:
    return HaltStore.from_url(settings.redis_url.get_secret_value(), settings.redis_prefix)


def halt_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the halt record and pending approvals."""
    store = _store(settings)
    record = store.read()
    approvals = store.approvals(record.version) if record.halted and (record.present or record.damage) else {}
    if args.json:
        print(json.dumps({**record.to_dict(), "approvals": approvals}))
    else:
        print(f"state: {record.state}  version: {record.version}  since: {record.since or '-'}  by: {record.by or '-'}")
        print(f"reason: {record.reason or '-'}")
        if record.damage:
            print("THE HALT RECORD IS DAMAGED (read as HALTED): " + "; ".join(record.damage))
            print("repair: the two-person clear (vigil halt clear, a clinical lead and the on-call engineer) writes a "
                  "fresh RUNNING record; a trip writes a fresh HALTED one")
        if record.incident_id:
            print(f"incident: {record.incident_id}")
        for role, a in approvals.items():
            print(f"approved by {a['by']} as {role}: {a['reason']}")
    return 0 if not record.halted else 3


def gate_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP gate until SIGTERM or Ctrl-C."""
    from safety_gate.http import make_server

    gate = Gate.from_url(
        settings.redis_url.get_secret_value(),
        staleness_s=settings.staleness_s,
        prefix=settings.redis_prefix,
        poll_s=min(settings.gate_poll_s, settings.staleness_s / 4),
        require_heartbeat=settings.require_scorer_heartbeat,
        max_partition_lag=settings.gate_max_partition_lag,
        fallback=FallbackMessages.from_file(settings.fallback_file),
    )
    server = make_server(gate, host=args.host, port=args.port)
    print(f"gate listening on http://{args.host}:{server.server_address[1]}/v1/gate", flush=True)
    stop = threading.Event()

    def _shutdown(*_: object) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        gate.close()
    return 0
