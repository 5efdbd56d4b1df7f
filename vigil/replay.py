"""`vigil replay`: rebuild every piece of derived Redis state from the topics after a Redis loss.

Kafka is the system of record; Redis holds what was derived from it. Replay reads each topic from its
beginning under fresh consumer groups (the live groups' offsets are not touched) and applies it with the same
idempotent code the services run, so replaying over state that survived changes nothing:

1. incidents: the incident view, from `safety.incidents`;
2. scorer: conversation state and turn embeddings, from `conversation.events` (scored again, in order, so
   every turn gets the context and the score it had; nothing is published, no heartbeat is written);
3. evaluator: labels joined to predictions, operational windows, rule states, from `clinician.labels`,
   `conversation.events` and `safety.review` (no actions: nothing pages again, nothing trips);
4. review queue: requests from `safety.review`, then the labels recorded on them.

`--since TS` replays only records at or after TS (onto state restored from a snapshot taken before TS): each
fresh group starts at the first offset at or after TS on every partition (`offsets_for_times`). Replaying from
an earlier time than needed only does again what is idempotent; from a later time it misses what lay between.

The halt record is **not** rebuilt: after a Redis loss the gate answers halted until a clinical lead and the
on-call engineer clear it (`vigil halt init`). The summary it prints (events, conversations, flagged, labels
joined, rule states) is `state_summary`, which a test compares with the same summary taken before the loss.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from tqdm import tqdm

from evaluators.evaluator import Evaluator
from evaluators.store import EvaluatorStore
from incidents.commands import incident_events
from incidents.service import IncidentService
from incidents.store import IncidentStore
from kafka_io import read_all
from pipeline.live_models import LiveModelSwitch, champion_scorer
from pipeline.scorer import Scorer
from review.queue import ReviewQueue
from safety_gate.halt import HaltStore
from vigil.evaluate import run_evaluator
from vigil_core.contracts import ClinicianLabel, ReviewRequest, ShadowScore, parse_event
from vigil_core.errors import ContractError
from vigil_core.label_signing import LabelSigner, account_enabled
from vigil_core.model_record import ModelRecord, ShadowStore
from vigil_core.records import OutRecord
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["replay", "state_summary", "replay_command"]

# Each stage ends once its consumer has seen nothing new for this long (the topics are read to their end).
IDLE_END_S = 5.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def state_summary(settings: Settings) -> dict[str, Any]:
    """What Redis holds, in numbers a person can compare before a loss and after a replay."""
    r = connect(settings.redis_url.get_secret_value())
    p = settings.redis_prefix
    conversations = flagged = closed = 0
    for key in r.scan_iter(match=f"{p}pred:*", count=1000):
        conversations += 1
        fields = r.hmget(key, "flagged", "closed")
        flagged += fields[0] == b"1"
        closed += fields[1] == b"1"
    store = EvaluatorStore(r, p, settings.label_wait_s)
    queue = ReviewQueue(r, p)
    return {
        "conversations": conversations, "flagged": flagged, "closed": closed,
        "labels_joined": int(r.zcard(f"{p}eval:labelled")),
        "rule_states": dict(sorted(store.states().items())),
        "review_pending": len(queue.pending(100_000)),
        "incidents_open": len(IncidentStore(r, p).list(only_open=True)),
        "halt": HaltStore(r, p).read().state,
    }


def _log_ends(consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """The next offset of each partition. tansu reports `end_offsets` as the last batch's base offset + 1
    (shared BROKER.md); the highwater mark of a fetch is right, so fetch each partition's last batch."""
    ends = consumer.end_offsets(tps)
    live = [tp for tp in tps if ends[tp] > 0]
    consumer.assign(live)
    for tp in live:
        consumer.seek(tp, ends[tp] - 1)
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in live) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
    return {tp: consumer.highwater(tp) or ends[tp] for tp in tps}


def _start_at(settings: Settings, group: str | None, topics: list[str], since_ms: int | None) -> int:
    """Records from `since_ms` (None: the beginning) to the end of `topics`; with a `group`, commit those start
    offsets for it first, so a consumer of that fresh group begins there."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=group,
                             enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return 0
        starts, ends = consumer.beginning_offsets(tps), _log_ends(consumer, tps)
        if since_ms is not None:
            found = consumer.offsets_for_times({tp: since_ms for tp in tps})
            # No record at or after the time: Kafka answers None, tansu offset 0 with timestamp -1.
            starts = {tp: hit.offset if (hit := found.get(tp)) is not None and hit.timestamp >= 0 else ends[tp]
                      for tp in tps}
            if group is not None:
                consumer.commit({tp: OffsetAndMetadata(starts[tp], None, -1) for tp in tps})
        return sum(max(0, ends[tp] - starts[tp]) for tp in tps)
    finally:
        consumer.close()


def _progress(label: str, total: int, count: Any, done: threading.Event, every_s: float = 0.5) -> threading.Thread:
    def loop() -> None:
        with tqdm(total=total or None, desc=label, unit="rec", file=sys.stderr, dynamic_ncols=True) as bar:
            while not done.wait(every_s):
                bar.update(int(count()) - bar.n)
            bar.update(int(count()) - bar.n)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def _events_seen(scorer: Scorer) -> float:
    return sum(sample.value for metric in scorer.metrics.events.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


class _CountingEvaluator(Evaluator):
    """The evaluator, counting the records it applies (the progress bar)."""

    applied = 0

    def apply(self, records: list[Any]) -> list[OutRecord]:
        self.applied += len(records)
        return super().apply(records)


def _replay_shadow(settings: Settings, recent: Any) -> int:
    """`shadow:*` from `safety.scores.shadow` (idempotent: each turn writes its own field)."""
    shadows = ShadowStore(connect(settings.redis_url.get_secret_value()), settings.redis_prefix, settings.label_wait_s)
    by_version: dict[tuple[str, float], list[tuple[str, int, float, bool]]] = {}
    for rec in read_all(settings, settings.topic_scores_shadow):
        if not recent(rec):
            continue
        try:
            score = parse_event(rec.value, accept=frozenset({"safety.shadow_score/1"}))
        except ContractError:
            continue
        assert isinstance(score, ShadowScore)
        by_version.setdefault((score.model_version, score.threshold), []).append(
            (score.conversation_id, score.turn, score.score, score.flagged))
    for (version, threshold), rows in by_version.items():
        for start in range(0, len(rows), 1000):
            shadows.write(version, threshold, rows[start:start + 1000])
    return sum(len(rows) for rows in by_version.values())


def replay(settings: Settings, stamp: str | None = None, since: datetime | None = None) -> dict[str, Any]:
    """Rebuild the derived state (from `since`, or the beginning); returns the counts of what was replayed and
    the state summary after it."""
    stamp = stamp or time.strftime("%Y%m%dT%H%M%S")
    since_ms = None if since is None else int(since.timestamp() * 1000)
    counts: dict[str, int] = {}

    def recent(rec: Any) -> bool:
        return since_ms is None or rec.timestamp >= since_ms

    _say("1/4 incidents from " + settings.topic_incidents)
    service = IncidentService(settings)
    try:
        events = [e for e in incident_events(settings) if since is None or e.at >= since]
        counts["incident_events"] = service.rebuild(events)
    finally:
        service.close()

    # A candidate's shadow scores (the model comparison, and whether a closed conversation was a disagreement
    # sampled for review) come back first, from their own topic.
    counts["shadow_scores"] = _replay_shadow(settings, recent)

    _say("2/4 conversation state from " + settings.topic_events + " (scored again, in order)")
    scorer_settings = settings.model_copy(update={"scorer_group": f"{settings.scorer_group}-replay-{stamp}"})
    total = _start_at(settings, scorer_settings.scorer_group, [settings.topic_events], since_ms)
    response_model = None
    if settings.response_safety:  # the harmful-response window and the replies' risk are derived state too
        from models.response_safety import ResponseSafetyModel

        response_model = ResponseSafetyModel.load()
    # The champion the live-model record names (after a rollback, the version rolled back to), so replayed
    # turns get the scores that version gives; the configured model when no record survived.
    champion, start = champion_scorer(scorer_settings, LiveModelSwitch(
        scorer_settings, ModelRecord(connect(settings.redis_url.get_secret_value()), settings.redis_prefix)),
        shadow=False)
    scorer = Scorer(scorer_settings, champion, replay=True, response_model=response_model)
    scorer.apply_switch(start)
    done = threading.Event()
    bar = _progress(settings.topic_events, total, lambda: _events_seen(scorer), done)
    try:
        scorer.run(max_idle_s=IDLE_END_S)
    finally:
        done.set()
        bar.join()
    counts["events"] = int(_events_seen(scorer))

    _say("3/4 labels, operational windows and rule states (no actions)")
    evaluator_settings = settings.model_copy(update={"evaluator_group": f"{settings.evaluator_group}-replay-{stamp}"})
    evaluator = _CountingEvaluator(evaluator_settings, on_alert=None)
    total = _start_at(settings, evaluator_settings.evaluator_group, evaluator.topics(), since_ms)
    done = threading.Event()
    bar = _progress("labels, events, reviews", total, lambda: evaluator.applied, done)
    try:
        run_evaluator(evaluator, max_idle_s=IDLE_END_S)
        evaluator.evaluate()
    finally:
        done.set()
        bar.join()

    _say("4/4 review queue from " + settings.topic_review + " and " + settings.topic_labels)
    r = connect(settings.redis_url.get_secret_value())
    queue = ReviewQueue(r, settings.redis_prefix)
    signer = LabelSigner.from_settings(settings)
    requests = labels = 0
    for topic, accept in ((settings.topic_review, "safety.review_request/1"), (settings.topic_labels,
                                                                               "clinician.label/1")):
        for rec in read_all(settings, topic):
            if not recent(rec):
                continue
            try:
                event = parse_event(rec.value, accept=frozenset({accept}))
            except ContractError:
                continue  # already dead-lettered by its consumer
            if isinstance(event, ReviewRequest):
                queue.add(event)
                requests += 1
            elif isinstance(event, ClinicianLabel):
                if signer.refusal(event) or not account_enabled(r, settings.redis_prefix, event.reviewer_id):
                    continue  # a forged label: the evaluator dead-lettered it, the queue never saw it
                queue.record(event)
                labels += 1
    counts["review_requests"], counts["labels"] = requests, labels
    return {"replayed": counts, "state": state_summary(settings)}


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    """Replay from the beginning of the topics (or `--since`) and print the verification summary."""
    result = replay(settings, since=args.since)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for section, values in result.items():
            print(section)
            for key, value in values.items():
                print(f"  {key:<16} {value}")
    if result["state"]["halt"] != "RUNNING":
        _say("the halt record is not rebuilt: the gate answers halted until it is cleared (`vigil halt clear` by a "
             "clinical lead and the on-call engineer where the halt history survived, `vigil halt init` where Redis "
             "lost everything)")
    return 0
