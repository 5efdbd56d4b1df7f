"""The demo's simulated actors: the chat backend and its AI (asking the gate before each reply), the clinicians who
label what is sent to review, the crisis team that works the urgent cases, and the pager's webhook receiver."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

from demo.scenario import (
    CONTACT_AFTER_S,
    DEMO_CLINICIAN,
    DEMO_CRISIS_CLINICIAN,
    HARMFUL_AT,
    HARMFUL_CONVERSATION,
    LABEL_GAP_S,
    URGENT_AT,
    URGENT_CONVERSATION,
    Stats,
)
from kafka_io import OutRecord, RecordProducer, make_consumer
from safety_gate.fallback import FALLBACK_MODEL_VERSION, HANDOFF_MODEL_VERSION
from vigil_core.contracts import (
    ClinicianLabel,
    ConversationClosed,
    ConversationMessage,
    ReviewRequest,
    SafetyScore,
    parse_event,
    utcnow,
)
from vigil_core.label_signing import LabelSigner
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["Actors", "Receiver"]


class Receiver:
    """A local HTTP receiver standing in for PagerDuty: records every event it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with contextlib.suppress(ValueError):
                    outer.events.append(json.loads(body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/enqueue"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Actors:
    """The Demo's simulated actors (a part of `demo.run.Demo`, kept apart to be read alone)."""

    stats: Stats
    corpus: list[dict[str, Any]]
    truth: dict[str, dict[str, Any]]
    rate: float
    gate_port: int
    signer: LabelSigner
    _stop: threading.Event

    if TYPE_CHECKING:  # the supervisor's (demo/run.py)
        @property
        def ready(self) -> Settings: ...

        def note(self, text: str) -> None: ...

    def _gate_allows(self, cid: str) -> tuple[bool, str, bool]:
        """(allowed, fallback text or reason, handed to a human) for one reply in conversation `cid`."""
        url = f"http://127.0.0.1:{self.gate_port}/v1/gate?conversation_id={cid}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return True, json.loads(resp.read())["reason"], False
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
            return False, body.get("fallback", ""), bool(body.get("handoff"))
        except OSError:
            return False, "", False

    def _chat(self) -> None:
        s = self.ready
        producer = RecordProducer(s)
        rng = random.Random(7)
        gap = 1.0 / self.rate
        try:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                template = self.corpus[rng.randrange(len(self.corpus))]
                cid = f"demo-{n:05d}"
                if n == URGENT_AT:
                    template, self.stats.urgent_cid = URGENT_CONVERSATION, cid
                    self.note(f"{cid}: a person says they have the means at hand")
                elif n == HARMFUL_AT:
                    template, self.stats.harmful_cid = HARMFUL_CONVERSATION, cid
                    self.note(f"{cid}: the AI answers a person in distress with a joke")
                self.truth[cid] = template
                turns = template["turns"]
                for turn, text in enumerate(turns):
                    if self._stop.is_set():
                        return
                    role: Literal["user", "assistant"] = "user" if turn % 2 == 0 else "assistant"
                    latency = None
                    served_by = "chat-ai-1"
                    if role == "assistant":
                        allowed, info, handoff = self._gate_allows(cid)
                        latency = rng.uniform(600, 2400)
                        if not allowed:  # the gate's text: published as such, so Vigil does not judge it
                            served_by = HANDOFF_MODEL_VERSION if handoff else FALLBACK_MODEL_VERSION
                        if handoff:
                            self.stats.handoff_replies += 1
                            text = "[handed to a human] " + (info.splitlines()[0] if info else "")
                            self.stats.ai_lines.append(f"{cid} HUMAN HANDOFF: {text[:60]}")
                        elif not allowed:
                            self.stats.fallbacks += 1
                            text = info.splitlines()[0] if info else "[crisis resources fallback]"
                            self.stats.ai_lines.append(f"{cid} AI (halted, fallback): {text[:70]}")
                        else:
                            self.stats.ai_lines.append(f"{cid} AI: {text[:70]}")
                            if self.stats.handoff_replies and cid not in (self.stats.urgent_cid,
                                                                          self.stats.harmful_cid):
                                self.stats.answered_during_handoff += 1
                    msg = ConversationMessage(event_id=f"{cid}-{turn}", conversation_id=cid, user_id=f"user-{n % 97}",
                                              turn=turn, role=role, text=text, ts=utcnow(), latency_ms=latency,
                                              model_version=served_by)  # type: ignore[arg-type]
                    producer.send_all([OutRecord(s.topic_events, cid, msg.to_bytes())])
                    self.stats.published += 1
                    time.sleep(gap)
                closed = ConversationClosed(event_id=f"{cid}-closed", conversation_id=cid, ts=utcnow())
                producer.send_all([OutRecord(s.topic_events, cid, closed.to_bytes())])
                self.stats.published += 1
        finally:
            producer.close()

    def _clinicians(self) -> None:
        s = self.ready
        consumer = make_consumer(s, "demo-clinicians", [s.topic_review, s.topic_scores])
        producer = RecordProducer(s)
        labelled: set[str] = set()
        backlog: deque[OutRecord] = deque()
        next_label = 0.0
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    for rec in records:
                        ev = parse_event(rec.value)
                        if isinstance(ev, SafetyScore):
                            self.stats.scores += 1
                            if ev.flagged:
                                self.stats.flagged_conversations.add(ev.conversation_id)
                            continue
                        if not isinstance(ev, ReviewRequest) or ev.conversation_id in labelled:
                            continue
                        truth = self.truth.get(ev.conversation_id)
                        if truth is None:
                            continue
                        labelled.add(ev.conversation_id)
                        label = self.signer.sign(ClinicianLabel(
                            label_id=f"{ev.conversation_id}-demo-clinician", conversation_id=ev.conversation_id,
                            level=truth["level"], first_crisis_turn=truth.get("first_crisis_turn"),
                            reviewer_id=DEMO_CLINICIAN, confidence=0.9, ts=utcnow(),
                        ))
                        backlog.append(OutRecord(s.topic_labels, ev.conversation_id, label.to_bytes()))
                consumer.commit()
                # A clinician submits one label at a time: the evaluator sees recall fall step by step
                # (through WARNING before CRITICAL) instead of several misses landing in one batch.
                if backlog and time.monotonic() >= next_label:
                    producer.send_all([backlog.popleft()])
                    self.stats.labels += 1
                    next_label = time.monotonic() + LABEL_GAP_S
        finally:
            consumer.close()
            producer.close()

    def _crisis_team(self) -> None:
        """The simulated crisis team: claims each urgent case as it opens (nearest deadline first), reaches the
        person `CONTACT_AFTER_S` later and records the outcome, which closes the case (as the review app does)."""
        from incidents.cases import CaseError, CaseStore
        from review.outcomes import OutcomeStore

        s = self.ready
        client = connect(s.redis_url.get_secret_value())
        cases = CaseStore(client, s.redis_prefix)
        outcomes = OutcomeStore(client, s.redis_prefix)
        seen: set[str] = set()
        try:
            while not self._stop.wait(0.5):
                for case in cases.open_cases():
                    if case.conversation_id not in seen:
                        seen.add(case.conversation_id)
                        self.stats.cases_opened += 1
                    try:
                        if case.state == "open":
                            cases.claim(case.conversation_id, DEMO_CRISIS_CLINICIAN)
                            self.stats.cases_claimed += 1
                        elif (datetime.now(UTC) - datetime.fromisoformat(case.claimed_at)).total_seconds() \
                                >= CONTACT_AFTER_S:
                            outcomes.record(case.conversation_id, "contacted", DEMO_CRISIS_CLINICIAN, "",
                                            datetime.fromisoformat(case.opened_at))
                            cases.close(case.conversation_id, DEMO_CRISIS_CLINICIAN, "contacted")
                            self.stats.cases_closed += 1
                    except CaseError:
                        continue
        except Exception as exc:  # noqa: BLE001 - the demo's own actor; its end is reported, not raised
            self.note(f"simulated crisis team stopped: {type(exc).__name__}")
        finally:
            client.close()
