"""`vigil score`: the scorer (pipeline), with the watch on the evaluator (incidents) in the same process."""

from __future__ import annotations

import argparse
import logging

from incidents.cases import CaseWatch
from incidents.service import IncidentService
from incidents.urgent import PersonAtRisk
from incidents.watch import EvaluatorWatch
from pipeline.live_models import LiveModelSwitch, champion_scorer
from pipeline.scorer import Scorer
from vigil_core.model_record import ModelRecord
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["score_command"]

log = logging.getLogger(__name__)


def score_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scorer in the foreground until SIGTERM."""
    from prometheus_client import start_http_server

    client = connect(settings.redis_url.get_secret_value())
    # The champion (and any shadow candidate) the live-model record names; the configured model when none was
    # ever promoted, or when the named one cannot be loaded here (said in the log and the load-failure counter).
    switch = LiveModelSwitch(settings, ModelRecord(client, settings.redis_prefix))
    resilient, start = champion_scorer(settings, switch)
    response_model = None
    if settings.response_safety:
        from models.response_safety import ResponseSafetyModel

        response_model = ResponseSafetyModel.load()
    scorer = Scorer(settings, resilient, response_model=response_model, switch=switch)
    switch.metrics = scorer.metrics
    if start.champion is None:
        scorer.metrics.model_load_failures.inc()
    scorer.apply_switch(start)  # the shadow candidate, if one is named
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    if port:
        start_http_server(port, registry=scorer.metrics.registry)
    scorer.install_signal_handlers()
    incidents = IncidentService(settings, client)
    watch = EvaluatorWatch(settings, client, incidents.open, incidents.find_open)
    responder = PersonAtRisk(settings, client, incidents)
    scorer.on_urgent = responder.respond  # a person at imminent risk
    scorer.on_harmful = responder.harmful  # an unsafe AI reply to a person in crisis
    # Urgent cases past their deadline with nobody having reached the person: re-page, and the P0 (the service
    # failed that person); the capacity P1. Every scorer replica watches; one handles each breach.
    cases = CaseWatch(responder.cases, incidents, responder.pager)
    # The outbox is dispatched here too: when the evaluator (its usual dispatcher) is the one that is down, the
    # P1 about it must still go out. Dispatchers take leases, so several never send one notice twice.
    incidents.start()
    watch.start()
    cases.start()
    log.info("scorer %s started (model %s, threshold %.4f)", scorer.instance, scorer.model_version,
             scorer.threshold)
    try:
        scorer.run(max_idle_s=args.exit_when_idle)
    finally:
        cases.stop()
        watch.stop()
        incidents.stop()
    return 0
