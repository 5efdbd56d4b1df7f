"""`vigil evaluate`: the evaluator wired to Kafka (pipeline), the incident engine (incidents) and the halt.

The evaluator itself (evaluators) knows neither Kafka nor the incident engine; this module is where they meet.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from evaluators.evaluator import Evaluation, Evaluator, dumps
from incidents.recall_actions import ActionEngine
from incidents.service import IncidentService
from incidents.store import IncidentStore
from kafka_io import serve
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["run_evaluator", "evaluate_command"]

log = logging.getLogger(__name__)

CRITICAL_EXIT = 3

# Evaluate at least this often when no record arrives, so time-based rules (a label arriving late, a window
# ageing out, a sentinel) move without traffic.
EVALUATE_EVERY_S = 2.0
# Labels and events are small; a batch this size applies in one Redis round trip per kind.
EVALUATOR_BATCH = 500


def run_evaluator(evaluator: Evaluator, max_idle_s: float | None = None,
                  evaluate_every_s: float = EVALUATE_EVERY_S) -> Evaluation | None:
    """Consume until the evaluator is stopped (or idle for `max_idle_s`); returns the last evaluation.

    Example:
        last = run_evaluator(Evaluator(settings), max_idle_s=3.0)
    """
    s = evaluator.settings
    last: Evaluation | None = None
    last_eval = 0.0

    def periodic(had_records: bool) -> None:
        nonlocal last, last_eval
        if had_records or time.monotonic() - last_eval >= evaluate_every_s:
            last = evaluator.evaluate()
            last_eval = time.monotonic()

    serve(s, s.evaluator_group, evaluator.topics(), evaluator.apply, stop=evaluator.stopping, on_cycle=periodic,
          max_idle_s=max_idle_s, max_records=EVALUATOR_BATCH, what="evaluator batch")
    return last


def evaluate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the evaluator (with the safety actions wired in), or evaluate once and print."""
    from prometheus_client import start_http_server

    client = connect(settings.redis_url.get_secret_value())
    actions = None
    if not args.no_actions:
        actions = ActionEngine(settings, IncidentService(settings, client), client)
    incidents = IncidentStore(client, settings.redis_prefix)
    evaluator = Evaluator(settings, on_alert=actions.handle if actions else None,
                          open_incidents=incidents.open_counts)
    if args.once:
        evaluation = run_evaluator(evaluator, max_idle_s=args.idle)
        if evaluation is None:
            evaluation = evaluator.evaluate()
        if args.json:
            print(dumps(evaluation))
        else:
            for row in evaluation.to_dict()["rules"]:
                print(f"{row['rule']:<22} {row['state']:<18} value={row['value']} n={row['n']:.1f}")
        # exit 3 when a rule is CRITICAL (a cron job or a deploy check can act on it), as `vigil halt status`
        return CRITICAL_EXIT if any(row["state"] == "CRITICAL" for row in evaluation.to_dict()["rules"]) else 0
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    if port:
        from incidents.outbox import Outbox, OutboxCollector

        # the shared outbox in Redis, read at scrape time (no notifiers: this reads, it sends nothing)
        evaluator.metrics.registry.register(OutboxCollector(Outbox(client, settings.redis_prefix, {})))
        start_http_server(port, registry=evaluator.metrics.registry)
    evaluator.install_signal_handlers()
    if actions is not None:
        actions.start()
    try:
        run_evaluator(evaluator)
    finally:
        if actions is not None:
            actions.stop()
    log.info("evaluator stopped: %s", json.dumps({"states": evaluator.store.states()}))
    return 0
