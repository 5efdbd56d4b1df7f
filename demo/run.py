"""`vigil demo`: the whole loop on one machine, from a chat message to a tripped halt and a P0 report.

It starts, on free local ports, a tansu broker, a valkey server, the scorer, the evaluator (with the
incident engine) and the HTTP gate as child processes, plus a webhook receiver standing in for the
pager. A simulated chat backend publishes conversations from a small shipped corpus; a simulated AI
service asks the gate before each reply; simulated clinicians label what is sent to review, and a simulated crisis
clinician claims each urgent case (a person at imminent risk: handed to a human, paged to the crisis rotation, not a
P0) and records reaching the person. Part way
through, a new model version is rolled out with a broken calibration (its threshold is 0.995), the
labels start to show misses, recall falls through WARNING to CRITICAL, the halt trips, the AI switches
to the crisis-resources fallback, and a P0 is opened and delivered to the receiver.

Demo settings differ from production so the story fits in minutes: every closed conversation is
reviewed (pi_floor 1.0) and the recall window is 30 labelled crisis conversations with a minimum of 10.

This module is the supervisor (the processes, the phases, the summary); the story's constants are in
demo/scenario.py, the simulated actors in demo/actors.py, the live view in demo/view.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from demo.actors import Actors, Receiver
from demo.local import LocalBroker, LocalRedis, free_port, stop_process, wait_for_port
from demo.scenario import (
    BROKEN_THRESHOLD,
    BROKEN_URGENT_THRESHOLD,
    CORPUS,
    CRISIS_ROTA_KEY,
    DEMO_CLINICIAN,
    DEMO_CRISIS_CLINICIAN,
    DEMO_THRESHOLDS,
    PERSON_P0S,
    Stats,
)
from demo.view import LiveView
from kafka_io import ensure_topics
from vigil_core import keys
from vigil_core.label_signing import LabelSigner, parse_keys
from vigil_core.redis_client import connect
from vigil_core.rule_names import CUSUM_RULE, RECALL_RULE
from vigil_core.settings import Settings

__all__ = ["demo_command", "Demo"]

class Demo(Actors, LiveView):
    """Runs the scenario; `run()` returns the JSON summary."""

    def __init__(self, duration_s: float, out_dir: Path, live: bool, rate_per_s: float = 12.0) -> None:
        self.duration_s = duration_s
        self.out = out_dir
        self.live = live
        self.rate = rate_per_s
        self.stats = Stats()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.broker = LocalBroker(log_dir=out_dir / "logs")
        self.redis_server = LocalRedis(log_dir=out_dir / "logs")
        self.receiver: Receiver | None = None
        self.corpus = json.loads(CORPUS.read_text())
        self.truth: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        # this run's label-signing key, shared by the simulated clinician and the evaluator
        self.label_keys = f"demo:{secrets.token_urlsafe(32)}"
        self.signer = LabelSigner(parse_keys(self.label_keys))
        self.settings: Settings | None = None
        self.gate_port = 0
        self.started = time.monotonic()

    # -- processes ----------------------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update({
            "VIGIL_KAFKA_BOOTSTRAP": self.broker.bootstrap, "VIGIL_REDIS_URL": self.redis_server.url,
            "VIGIL_PI_FLOOR": "1.0", "VIGIL_THRESHOLDS_FILE": str(self.out / "thresholds.toml"),
            "VIGIL_INCIDENTS_FILE": str(self.out / "incidents.toml"), "VIGIL_CONVERSATION_IDLE_S": "20",
            "VIGIL_SWEEP_INTERVAL_S": "2", "VIGIL_HEARTBEAT_INTERVAL_S": "1", "VIGIL_ESCALATION_CHECK_S": "2",
            "VIGIL_STALENESS_S": "3", "VIGIL_TOPIC_PARTITIONS": "2", "VIGIL_SESSION_TIMEOUT_MS": "6000",
            "VIGIL_BATCH_SIZE": "32", "VIGIL_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1", "VIGIL_LABEL_KEYS": self.label_keys,
        })
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.out / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", *args], env=self._env(**extra),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def _terminate(self, name: str, timeout_s: float = 20.0) -> None:
        stop_process(self.procs.pop(name, None), grace_s=timeout_s)

    def cleanup(self) -> None:
        """Stop every process this demo started, whatever state it is in."""
        self._stop.set()
        for name in list(self.procs):
            self._terminate(name, timeout_s=10)
        if self.receiver is not None:
            self.receiver.close()
        self.redis_server.stop()
        self.broker.stop()

    # -- the scenario -------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        """A line of the story (printed in plain mode, shown in the live view)."""
        stamp = f"{time.monotonic() - self.started:5.0f}s"
        self.stats.notes.append(f"{stamp} {text}")
        if not self.live:
            print(f"[{stamp}] {text}", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        """Start everything, play the scenario, return the summary."""
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        self.broker.start()
        self.redis_server.start()
        self.receiver = Receiver()
        (self.out / "thresholds.toml").write_text(DEMO_THRESHOLDS)
        (self.out / "incidents.toml").write_text(
            "[routing]\nP0 = [\"pager\", \"log\"]\nP1 = [\"pager\", \"log\"]\nP2 = [\"log\"]\nP3 = [\"log\"]\n"
            "[notifiers.pager]\ntype = \"pagerduty\"\nrouting_key = \"demo-routing-key\"\n"
            f"url = \"{self.receiver.url}\"\n"
            # urgent cases page the crisis rotation's own service, not the P0 route (issue 34)
            "[notifiers.crisis-pager]\ntype = \"pagerduty\"\n"
            f"routing_key = \"{CRISIS_ROTA_KEY}\"\nurl = \"{self.receiver.url}\"\n"
            "[cases]\nrouting = [\"crisis-pager\", \"log\"]\n"
        )
        self.settings = Settings(kafka_bootstrap=self.broker.bootstrap, redis_url=self.redis_server.url,  # type: ignore[arg-type]
                                 topic_partitions=2, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                 label_keys=self.label_keys)  # type: ignore[arg-type]
        ensure_topics(self.settings)
        from review.users import UserStore
        from safety_gate.halt import HaltStore

        client = connect(self.redis_server.url)
        HaltStore(client, self.settings.redis_prefix).init(by="demo clinical lead", reason="demo start")
        # the simulated clinician is an account, and its labels are signed as the review app signs them: the
        # evaluator counts no other label
        UserStore(client, self.settings.redis_prefix).add(DEMO_CLINICIAN, "reviewer", secrets.token_urlsafe(18))
        self.note(f"broker on {self.broker.bootstrap}, Redis on port {self.redis_server.port}")
        self.stats.phase = "loading the model"
        self._spawn("scorer-v1", ["score"])
        self.note("scorer v1 starting (loading the crisis model)")
        if not self._wait_heartbeat(client, timeout_s=120):
            raise RuntimeError(f"the scorer did not start; see {self.out / 'logs' / 'scorer-v1.log'}")
        self._spawn("evaluator", ["evaluate"])
        self.gate_port = free_port()
        self._spawn("gate", ["gate", "serve", "--port", str(self.gate_port)])
        wait_for_port(self.gate_port, timeout_s=30)
        self.note(f"evaluator and HTTP gate (port {self.gate_port}) running; halt RUNNING")
        UserStore(client, self.settings.redis_prefix).add(DEMO_CRISIS_CLINICIAN, "reviewer",
                                                          secrets.token_urlsafe(18))
        threads = [threading.Thread(target=self._chat, daemon=True),
                   threading.Thread(target=self._clinicians, daemon=True),
                   threading.Thread(target=self._crisis_team, daemon=True)]
        for t in threads:
            t.start()
        self.stats.phase = "healthy traffic"
        return self._play(client)

    @property
    def ready(self) -> Settings:
        """The demo's settings, once `run` has started the local broker and Redis."""
        if self.settings is None:
            raise RuntimeError("the demo's local services are not started")
        return self.settings

    def _wait_heartbeat(self, client: redis.Redis, timeout_s: float) -> bool:
        s = self.ready
        key = f"{s.redis_prefix}{keys.HEARTBEAT}scorer"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if client.exists(key):
                return True
            if any(p.poll() is not None for p in self.procs.values()):
                return False
            time.sleep(0.5)
        return False

    def _wait_instance(self, client: redis.Redis, pid: int, timeout_s: float) -> bool:
        s = self.ready
        pattern = f"{s.redis_prefix}{keys.HEARTBEAT}scorer:*:{pid}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if any(True for _ in client.scan_iter(pattern)):
                return True
            time.sleep(0.5)
        return False

    def _play(self, client: redis.Redis) -> dict[str, Any]:
        from evaluators.store import EvaluatorStore
        from incidents.cases import CaseStore
        from incidents.store import IncidentStore
        from safety_gate.halt import HaltStore

        s = self.ready
        halt = HaltStore(client, s.redis_prefix)
        incidents = IncidentStore(client, s.redis_prefix)
        cases = CaseStore(client, s.redis_prefix)
        evaluator = EvaluatorStore(client, s.redis_prefix, s.label_wait_s)
        deadline = self.started + self.duration_s
        degraded_at: float | None = None
        finished_at: float | None = None
        urgent_told = False
        harmful_told = False
        live = self._live_view() if self.live else contextlib.nullcontext()
        with live as view:
            while time.monotonic() < deadline and not self._stop.is_set():
                states = self._recall_states(evaluator)
                elapsed = time.monotonic() - self.started
                if degraded_at is None and (("OK" in states and elapsed > 0.3 * self.duration_s)
                                            or elapsed > 0.45 * self.duration_s):
                    degraded_at = time.monotonic()
                    self.note(f"rolling out scorer v2: a new model version with a broken calibration "
                              f"(threshold {BROKEN_THRESHOLD}, urgent level {BROKEN_URGENT_THRESHOLD})")
                    self.stats.phase = "v2 rolled out (broken calibration)"
                    # blue-green: v2 is up and beating before v1 leaves, so the heartbeat never lapses
                    v2 = self._spawn("scorer-v2", ["score"], VIGIL_THRESHOLD=BROKEN_THRESHOLD,
                                     VIGIL_URGENT_THRESHOLD=BROKEN_URGENT_THRESHOLD)
                    self._wait_instance(client, v2.pid, timeout_s=90)
                    self._terminate("scorer-v1")
                record = halt.read()
                case = cases.get(self.stats.urgent_cid) if self.stats.urgent_cid else None
                harmful = [i for i in incidents.list() if i.dedup_key.startswith("harmful_response:")]
                if harmful and not harmful_told:
                    harmful_told = True
                    self.note(f"{self.stats.harmful_cid}: the AI's reply judged unsafe: P0 {harmful[0].id} 'harmful AI "
                              "response', the conversation handed to a human")
                if case is not None and not urgent_told and self.stats.handoff_replies:
                    urgent_told = True
                    self.note(f"{self.stats.urgent_cid}: urgent case {case.id} paged to the crisis rotation (not a "
                              "P0); the conversation is handed to a human, every other one still gets the AI")
                p0 = [i for i in incidents.list() if i.severity == "P0" and i.dedup_key.split(":")[0]
                      not in PERSON_P0S]
                delivered = [e for e in (self.receiver.events if self.receiver else []) if e.get("event_action")
                             == "trigger" and e.get("payload", {}).get("severity") == "critical"]
                if record.halted and p0 and delivered and finished_at is None:
                    finished_at = time.monotonic()
                    self.stats.phase = "HALTED: AI serves crisis resources"
                    self.note(f"halt tripped ({record.reason}); P0 {p0[0].id} delivered to the pager receiver")
                if finished_at is not None and time.monotonic() - finished_at > 8:
                    break
                if view is not None:
                    view.update(self._render(states, record, incidents.list(), evaluator))
                time.sleep(0.5)
        self._stop.set()
        return self._summary(client, halt, incidents, evaluator)

    def _recall_states(self, evaluator: Any) -> list[str]:
        order: list[str] = []
        for a in evaluator.alerts():
            rule, to = a.get("rule"), a.get("to")
            counts = rule == RECALL_RULE or (rule == CUSUM_RULE and to == "CRITICAL")
            if counts and (not order or order[-1] != to):
                order.append(to)
        return order

    def _summary(self, client: redis.Redis, halt: Any, incidents: Any, evaluator: Any) -> dict[str, Any]:
        s = self.ready
        from incidents.commands import build_report
        from incidents.service import IncidentService

        report_path = ""
        all_incidents = incidents.list()
        p0 = [i for i in all_incidents if i.severity == "P0" and i.dedup_key.split(":")[0]
              not in PERSON_P0S]
        if p0:
            manager = IncidentService(s.model_copy(update={"incidents_file": self.out / "incidents.toml"}),
                                      client)
            try:
                path = self.out / f"{p0[0].id}-report.md"
                path.write_text(build_report(s, manager, p0[0].id))
                report_path = str(path)
            finally:
                manager.close()
        history = evaluator.history()
        recall = history[-1]["rates"][RECALL_RULE] if history else {}
        case_pages = [e for e in (self.receiver.events if self.receiver else [])
                      if e.get("routing_key") == CRISIS_ROTA_KEY and e.get("event_action") == "trigger"]
        return {
            "events": self.stats.published,
            "flagged": len(self.stats.flagged_conversations),
            # which of the corpus's conversations were flagged at least once, counted by their true level: ordinary
            # ones are the reviewers' waste
            "flagged_by_level": dict(sorted(Counter(
                level for _, level in {(id(self.truth[c]), self.truth[c]["level"])
                                       for c in self.stats.flagged_conversations if c in self.truth}).items())),
            "corpus_by_level": dict(sorted(Counter(t["level"] for t in self.corpus).items())),
            "labels": self.stats.labels,
            "states": self._recall_states(evaluator),
            "halt": halt.read().state,
            "incidents": [{"id": i.id, "severity": i.severity, "title": i.title} for i in all_incidents],
            "report_path": report_path,
            "recall": recall,
            "fallback_replies": self.stats.fallbacks,
            "pager_events": len(self.receiver.events) if self.receiver else 0,
            "urgent": {"conversation_id": self.stats.urgent_cid, "handoff_replies": self.stats.handoff_replies,
                       "answered_elsewhere_meanwhile": self.stats.answered_during_handoff,
                       "paged": [f"CASE-{cid}" for cid in [self.stats.urgent_cid]
                                 if cid and any(e["dedup_key"] == f"urgent_case:{cid}" for e in case_pages)]},
            "cases": {"opened": self.stats.cases_opened, "claimed": self.stats.cases_claimed,
                      "closed": self.stats.cases_closed, "pages": len(case_pages),
                      "paged_cases": len({e["dedup_key"] for e in case_pages}),
                      "breached": sum(i.dedup_key.startswith("case_breach:") for i in all_incidents)},
            "p0_incidents": sum(i.severity == "P0" for i in all_incidents),
            "harmful": {"conversation_id": self.stats.harmful_cid,
                        "paged": [i.id for i in all_incidents
                                  if i.dedup_key == f"harmful_response:{self.stats.harmful_cid}"]},
        }

    # -- the simulated chat backend and AI service --------------------------------------------------
def demo_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo; exit 0 when the halt tripped and a P0 report was written."""
    import logging

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    live = not args.json and sys.stdout.isatty()
    # The demo's own Kafka clients would print their connection chatter over the live view; the child
    # processes' logs are in demo-out/logs.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if live:
        logging.getLogger().setLevel(logging.WARNING)
    demo = Demo(args.duration, out, live=live, rate_per_s=args.rate)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        summary = demo.run()
    except KeyboardInterrupt:
        demo.cleanup()
        print("demo interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    finally:
        demo.cleanup()
    ok = summary["halt"] == "HALTED" and bool(summary["report_path"])
    if args.json:
        print(json.dumps(summary))
    else:
        print()
        print(f"events {summary['events']}, flagged conversations {summary['flagged']}, labels {summary['labels']}")
        print(f"recall states: {' -> '.join(summary['states'])}; halt: {summary['halt']}")
        u = summary["urgent"]
        print(f"person at risk: {u['conversation_id']} paged as urgent case {', '.join(u['paged']) or '(not paged)'}"
              f", {u['handoff_replies']} replies handed to a human while the AI answered "
              f"{u['answered_elsewhere_meanwhile']} in other conversations")
        c = summary["cases"]
        print(f"urgent cases: {c['opened']} opened, {c['pages']} pages to the crisis rotation, {c['claimed']} claimed "
              f"and {c['closed']} closed by the simulated crisis team, {c['breached']} past their deadline; "
              f"P0 incidents: {summary['p0_incidents']}")
        h = summary["harmful"]
        print(f"harmful AI reply: {h['conversation_id']} ({', '.join(h['paged']) or 'not caught'})")
        for i in summary["incidents"]:
            print(f"  {i['severity']} {i['id']}: {i['title']}")
        print(f"post-incident report: {summary['report_path'] or '(none: no P0 was opened)'}")
        print(f"logs: {out / 'logs'}")
    return 0 if ok else 1
