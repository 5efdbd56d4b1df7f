"""Faults injected into the real scorer, broker and Redis (issue 19): one conversation or one corrupt stored
value must never stop a partition, and nothing may be lost on the way."""

from __future__ import annotations

import base64
import json
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis

from kafka_io import ensure_topics
from tests.faults.results import RESULTS, Figures
from tests.helpers import chat_events, publish, read_topic, run_scorer, signed, values
from vigil_core.contracts import ConversationMessage

pytestmark = [pytest.mark.slow, pytest.mark.faults]

FILLER = "and then we walked to the park and talked about the weather and the football. "


@pytest.fixture
def fault_settings(settings, model_cache):
    return settings.model_copy(update={"batch_size": 32, "cache_dir": model_cache})


def _long_conversation(cid: str, user_turns: int, chars: int) -> list[ConversationMessage]:
    start = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    for i in range(user_turns):
        text = (("I want to die. " if i == 0 else "") + FILLER * (chars // len(FILLER) + 1))[:chars]
        out.append(ConversationMessage(event_id=f"{cid}-u{i}", conversation_id=cid, user_id="u-big", turn=2 * i,
                                       role="user", text=text, ts=start + timedelta(seconds=i)))
    return out


def test_one_very_long_conversation_is_scored_reviewed_and_blocks_nobody(fault_settings, resilient):
    """40 user turns of 30,000 characters, the first saying "I want to die": before the fix its review request
    outgrew Kafka's record limit and the partition was retried for ever."""
    s = fault_settings
    ensure_topics(s)
    big = _long_conversation("big", 40, 30_000)
    others = chat_events(6, turns=2, crisis_every=3)
    publish(s, big + others)
    run_scorer(s, resilient, max_idle_s=8.0)

    scores = values(read_topic(s, s.topic_scores, settle_s=1.0))
    per_event = Counter(d["event_id"] for d in scores)
    want = {e.event_id for e in big} | {e.event_id for e in others if e.role == "user"}
    assert want <= set(per_event), sorted(want - set(per_event))[:5]  # every user turn was scored
    assert max(per_event.values()) == 1  # and once: no batch was replayed again and again
    first = next(d for d in scores if d["event_id"] == "big-u0")
    assert first["flagged"]

    raw = [r for r in read_topic(s, s.topic_review, settle_s=1.0) if r.key == b"big"]
    assert len(raw) == 1
    request = json.loads(raw[0].value)
    assert len(raw[0].value) <= s.review_max_bytes + 4096  # under the bound, far under Kafka's 1 MiB
    assert request["first_flagged_turn"] == 0 and request["omitted_turns"] > 0
    assert any(t["turn"] == 0 and t["role"] == "user" and t["text"].startswith("I want to die")
               for t in request["turns"])
    assert read_topic(s, s.topic_dlq, settle_s=0.5) == []
    RESULTS.append(Figures("one conversation of 40 turns x 30,000 characters", len(big) + len(others),
                           len(want - set(per_event)), 0, 0, None,
                           f"review request {len(raw[0].value) // 1024} KiB with the flagged turn, "
                           f"{request['omitted_turns']} turns omitted; no partition stalled"))


def test_a_corrupt_stored_state_dead_letters_only_its_own_records(fault_settings, resilient):
    """A conversation whose Redis state cannot be read (a bad value written by hand or by a bug) used to stop
    scoring for its partition, or kill the scorer; now its records go to the DLQ with the reason after three
    attempts, and every other conversation is scored once."""
    s = fault_settings
    ensure_topics(s)
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    client.hset(f"{s.redis_prefix}pred:c00002", mapping={"conversation_id": "c00002", "max_score": "not a number"})
    events = chat_events(8, turns=2, crisis_every=4)
    publish(s, events)
    run_scorer(s, resilient, max_idle_s=8.0)

    dead = values(read_topic(s, s.topic_dlq, settle_s=1.0))
    bad = {e.event_id for e in events if e.conversation_id == "c00002"}
    assert {json.loads(base64.b64decode(d["raw"]))["event_id"] for d in dead} == bad
    assert all("not processed after 3 attempts: ValueError" in d["reason"] for d in dead)
    scores = values(read_topic(s, s.topic_scores, settle_s=1.0))
    per_event = Counter(d["event_id"] for d in scores)
    good = {e.event_id for e in events if e.role == "user" and e.conversation_id != "c00002"}
    assert good <= set(per_event) and not bad & set(per_event)
    # Scored twice only if a batch was replayed after the fault; then with the same score (exact replay).
    for event_id in good:
        assert len({round(d["score"], 6) for d in scores if d["event_id"] == event_id}) == 1

    # Offsets moved past the dead records: a restarted scorer finds nothing left to do.
    run_scorer(s, resilient, max_idle_s=4.0)
    assert len(values(read_topic(s, s.topic_dlq, settle_s=0.5))) == len(dead)
    RESULTS.append(Figures("a corrupt stored conversation state", len(events), 0, 0, 0, None,
                           f"its {len(dead)} records dead-lettered with the reason after 3 attempts each, every "
                           "other conversation scored"))


def _critical_alert():
    from evaluators.evaluator import Alert
    from vigil_core.clock import utcnow

    return Alert(rule="crisis_recall", state="CRITICAL", previous="WARNING", value=0.86, lower=0.80, upper=0.91,
                 n=120.0, window_start=1.0, window_end=2.0, evidence=["c1", "c2"], at=utcnow().isoformat(),
                 metrics={"crisis_recall": {"value": 0.86}})


def test_an_evaluator_killed_between_a_critical_transition_and_its_actions_halts_on_the_next_evaluation(settings):
    """The state said CRITICAL and nothing ever tripped the halt or paged: the transition is now recorded with
    its action pending, atomically, and whichever evaluator evaluates next runs it."""
    from evaluators.evaluator import Evaluator
    from evaluators.store import EvaluatorStore
    from incidents.recall_actions import ActionEngine
    from incidents.service import IncidentService
    from incidents.store import IncidentStore
    from safety_gate.halt import HaltStore

    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    halt = HaltStore(client, settings.redis_prefix)
    halt.init(by="clinical lead", reason="test start")
    # The dying process: its compare-and-set recorded CRITICAL (and the pending action), then it was killed.
    store = EvaluatorStore(client, settings.redis_prefix, settings.label_wait_s)
    assert store.transition("crisis_recall", "CRITICAL", _critical_alert().to_dict(), pending=True)
    assert halt.read().state == "RUNNING"

    engine = ActionEngine(settings, IncidentService(settings, client), client, watchdog=False)
    try:
        restarted = Evaluator(settings, on_alert=engine.handle)
        started = time.monotonic()
        assert restarted.run_pending_actions() == 1
        took = time.monotonic() - started
    finally:
        engine.stop()
    assert halt.read().state == "HALTED"
    p0 = [i for i in IncidentStore(client, settings.redis_prefix).list(only_open=True) if i.severity == "P0"]
    assert len(p0) == 1 and p0[0].dedup_key == "crisis-detection-failure"
    assert store.pending_actions() == {}
    assert restarted.run_pending_actions() == 0  # done once: nothing runs twice
    assert took < 60  # it ran in this call: the figure with a real process is the next test's


def test_an_evaluator_process_killed_right_after_a_critical_transition_pages_once_when_the_next_one_runs(
    settings, resilient, model_cache, tmp_path
):
    """The same, with real `vigil evaluate` processes: the first is SIGKILLed by the failpoint between storing
    a CRITICAL transition and running its actions; the next one pages, once."""
    from evaluators.store import EvaluatorStore
    from incidents.store import IncidentStore
    from kafka_io import OutRecord, RecordProducer
    from tests.helpers import vigil, wait_until
    from vigil_core.clock import utcnow
    from vigil_core.contracts import ClinicianLabel

    s = settings.model_copy(update={"cache_dir": model_cache})
    ensure_topics(s)
    publish(s, chat_events(4, turns=2, crisis_every=4))
    run_scorer(s, resilient, max_idle_s=3.0)
    flagged = {d["conversation_id"] for d in values(read_topic(s, s.topic_scores)) if d["flagged"]}
    assert "c00001" not in flagged  # ordinary turns; a clinician finds it imminent: a missed imminent crisis
    producer = RecordProducer(s)
    lab = ClinicianLabel(label_id="c00001-r1", conversation_id="c00001", level="imminent", reviewer_id="r1",
                         confidence=0.9, ts=utcnow())
    producer.send_all([OutRecord(s.topic_labels, lab.conversation_id, signed(s, lab).to_bytes())])
    producer.close()
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    store = EvaluatorStore(client, s.redis_prefix, s.label_wait_s)
    incidents = IncidentStore(client, s.redis_prefix)

    def p0s():
        return [i for i in incidents.list(only_open=True) if i.severity == "P0"]

    dying = vigil(["evaluate"], s, tmp_path / "evaluator-0.log", VIGIL_FAILPOINTS="evaluator.after_critical_transition")
    assert dying.wait(timeout=120) == -signal.SIGKILL, (tmp_path / "evaluator-0.log").read_text()[-2000:]
    assert store.states().get("sentinel:c00001") == "CRITICAL"  # the transition is stored...
    assert len(store.pending_actions()) == 1 and p0s() == []  # ...its action is not done: nobody was paged

    started = time.monotonic()
    proc = vigil(["evaluate"], s, tmp_path / "evaluator-1.log")
    try:
        assert wait_until(p0s, timeout_s=120, every=0.2), (tmp_path / "evaluator-1.log").read_text()[-2000:]
        took = time.monotonic() - started
        time.sleep(3)  # another evaluation or two: the action must not run again
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(p0s()) == 1 and p0s()[0].dedup_key == "crisis-detection-failure"
    assert store.pending_actions() == {}
    RESULTS.append(Figures("evaluator process SIGKILLed between a CRITICAL transition and its actions", 1, 0, 0,
                           int(len(p0s()) != 1), took, "killed by a failpoint (VIGIL_FAILPOINTS) right after the "
                           "transition was stored; recovery = start of the next vigil evaluate to its P0, once"))


def test_actions_that_fail_stay_pending_and_run_again_until_they_complete(settings):
    from evaluators.evaluator import Evaluator
    from evaluators.store import EvaluatorStore
    from vigil_core.errors import StoreUnavailable

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    seen: list = []

    def flaky(alert):
        seen.append(alert.state)
        if len(seen) == 1:
            raise StoreUnavailable("Redis blip while tripping the halt")

    evaluator = Evaluator(settings, on_alert=flaky)
    store = EvaluatorStore(client, settings.redis_prefix, settings.label_wait_s)
    action_id = store.transition("crisis_recall", "CRITICAL", _critical_alert().to_dict(), pending=True)
    assert evaluator.run_pending_actions() == 0 and action_id in store.pending_actions()
    assert evaluator.run_pending_actions() == 1 and store.pending_actions() == {}
    assert seen == ["CRITICAL", "CRITICAL"]


def test_a_label_whose_join_failed_is_joined_when_its_record_comes_again(settings):
    """A label was marked seen before its join: a join that failed (Redis blip) lost it for good, because
    the replayed record was then skipped as a duplicate."""
    from evaluators.store import EvaluatorStore
    from vigil_core.clock import utcnow
    from vigil_core.contracts import ClinicianLabel
    from vigil_core.errors import StoreUnavailable

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    now = utcnow()
    client.hset(f"{settings.redis_prefix}pred:c1", mapping={
        "conversation_id": "c1", "max_score": "0.9", "flagged": "1", "first_flagged_turn": "0", "pi": "1.0",
        "last_activity": str(now.timestamp())})
    store = EvaluatorStore(client, settings.redis_prefix, settings.label_wait_s)
    label = ClinicianLabel(label_id="c1:ann:1", conversation_id="c1", level="high", first_crisis_turn=0,
                           reviewer_id="ann", confidence=0.9, ts=now)
    join = store.join

    def blip(conversation_id):
        raise StoreUnavailable("Redis blip during the join")

    store.join = blip  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        store.apply_label(label)
    store.join = join  # type: ignore[method-assign]
    assert store.apply_label(label) == "applied"  # the replayed record (before the fix: "duplicate", never joined)
    assert [c.conversation_id for c in store.labelled(since=0)] == ["c1"]
    assert store.apply_label(label) == "duplicate"


def test_a_silent_evaluator_opens_one_p1_and_no_halt(settings):
    """Nothing watched the evaluator: if it died, recall stopped being measured and nothing paged."""
    from incidents.service import IncidentService
    from incidents.store import IncidentStore
    from incidents.watch import EVALUATOR_DOWN, EvaluatorWatch
    from safety_gate.halt import HaltStore
    from safety_gate.heartbeat import Heartbeat

    ensure_topics(settings)
    s = settings.model_copy(update={"evaluator_heartbeat_ttl_s": 0.5})
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    HaltStore(client, s.redis_prefix).init(by="clinical lead", reason="test start")
    service = IncidentService(s, client)
    now = [0.0]
    watches = [EvaluatorWatch(s, client, service.open, service.find_open, clock=lambda: now[0]) for _ in range(2)]
    beat = Heartbeat(client, s.redis_prefix, "evaluator", s.evaluator_heartbeat_ttl_s)
    beat.beat()
    now[0] = 1.0  # past the start-up grace
    assert not any(w.check() for w in watches)  # alive: nothing
    client.delete(beat.key)  # the evaluator died: its heartbeat is gone
    assert all(w.check() for w in watches)  # two scorer replicas see it ...
    opened = [i for i in IncidentStore(client, s.redis_prefix).list(only_open=True) if i.dedup_key == EVALUATOR_DOWN]
    assert len(opened) == 1 and opened[0].severity == "P1"  # ... and open one P1 between them
    assert HaltStore(client, s.redis_prefix).read().state == "RUNNING"  # not a halt (incidents/watch.py says why)
    service.close()


def test_the_evaluator_refreshes_its_heartbeat_at_every_evaluation(settings):
    from evaluators.evaluator import Evaluator

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    Evaluator(settings).evaluate()
    assert 0 < client.pttl(f"{settings.redis_prefix}heartbeat:evaluator") <= settings.evaluator_heartbeat_ttl_s * 1000


def test_a_scorer_on_its_backup_for_too_long_opens_a_p1(settings):
    """The backup scorer could stand in for a failed model indefinitely without anyone being told."""
    from incidents.recall_actions import BACKUP_IN_USE, ActionEngine
    from incidents.service import IncidentService
    from incidents.store import IncidentStore
    from safety_gate.heartbeat import Heartbeat

    ensure_topics(settings)
    s = settings.model_copy(update={"backup_alert_after_s": 0.3, "backup_share_limit": 0.5})
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    engine = ActionEngine(s, IncidentService(s, client), client, watchdog=True)
    scorer = Heartbeat(client, s.redis_prefix, "scorer", ttl_s=60)

    def open_p1s():
        return [i for i in IncidentStore(client, s.redis_prefix).list(only_open=True) if i.dedup_key == BACKUP_IN_USE]

    scorer.beat(backup_share=0.2)
    engine.tick()
    scorer.beat(backup_share=1.0)  # the model failed: every turn is scored by the backup lexicon
    engine.tick()
    assert open_p1s() == []  # not yet: a passing failure is not an incident
    time.sleep(0.4)
    scorer.beat(backup_share=None)  # no traffic in that interval: no evidence either way
    engine.tick()
    scorer.beat(backup_share=0.9)
    engine.tick()
    engine.tick()
    assert len(open_p1s()) == 1 and open_p1s()[0].severity == "P1"
    engine.manager.stop()


def test_after_redis_is_killed_and_restarted_empty_vigil_replay_rebuilds_it_and_the_halt_stays_halted(
    settings, model_cache, resilient, tmp_path
):
    """docs/design.md section 1: Redis holds only derived state, rebuilt from the topics. Before `vigil replay`,
    a Redis loss lost conversation state, label joins, rule windows and the review queue."""
    from pydantic import SecretStr

    from demo.local import LocalRedis
    from evaluators.evaluator import Evaluator
    from review.queue import ReviewQueue
    from safety_gate.halt import HaltStore
    from vigil.evaluate import run_evaluator
    from vigil.replay import replay, state_summary
    from vigil_core.contracts import ReviewRequest

    own = LocalRedis(log_dir=tmp_path)  # a Redis of its own, to kill
    own.start()
    s = settings.model_copy(update={"cache_dir": model_cache, "batch_size": 32, "pi_floor": 1.0,
                                    "conversation_idle_s": 1.0, "sweep_interval_s": 0.2,
                                    "redis_url": SecretStr(own.url)})
    ensure_topics(s)
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    HaltStore(client, s.redis_prefix).init(by="clinical lead", reason="test start")
    publish(s, chat_events(12, turns=2, crisis_every=3))
    run_scorer(s, resilient, max_idle_s=4.0)
    queue = ReviewQueue(client, s.redis_prefix)
    for rec in read_topic(s, s.topic_review, settle_s=0.5):
        queue.add(ReviewRequest.model_validate_json(rec.value))
    from kafka_io import OutRecord, RecordProducer
    from vigil_core.clock import utcnow
    from vigil_core.contracts import ClinicianLabel

    labelled = [ClinicianLabel(label_id=f"{cid}-r1", conversation_id=cid, level=level, reviewer_id="r1",
                               confidence=0.9, ts=utcnow())
                for cid, level in {"c00000": "high", "c00003": "imminent", "c00001": "no_risk",
                                   "c00002": "low"}.items()]
    producer = RecordProducer(s)
    labelled = [signed(s, lab) for lab in labelled]
    producer.send_all([OutRecord(s.topic_labels, lab.conversation_id, lab.to_bytes()) for lab in labelled])
    producer.close()
    for label in labelled:
        queue.record(label)
    run_evaluator(Evaluator(s), max_idle_s=3.0)
    before = state_summary(s)
    assert before["conversations"] == 12 and before["flagged"] >= 3 and before["labels_joined"] == 4

    port = own.port
    own.proc.send_signal(signal.SIGKILL)  # Redis is lost: killed, and restarted with nothing (no persistence)
    own.proc.wait()
    own.start(port=port)
    try:
        assert state_summary(s)["conversations"] == 0
        # accounts are not derived state: the operator restores them first (from a backup, or anew), else
        # replay refuses their labels as it must refuse any label of an unknown account
        from review.users import UserStore

        UserStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix).add(
            "r1", "reviewer", "a reviewer's password")
        started = time.monotonic()
        after = replay(s, stamp="t1")
        took = time.monotonic() - started
        again = replay(s, stamp="t2")  # replaying over rebuilt state changes nothing
        since = utcnow()  # state up to here is in Redis (as from a snapshot); what comes after is replayed alone
        time.sleep(0.05)
        publish(s, chat_events(4, turns=2, crisis_every=3, prefix="late"))
        later = replay(s, stamp="t3", since=since)
    finally:
        own.stop()
    assert after["replayed"]["events"] == 48 and after["replayed"]["labels"] == 4
    same = ("conversations", "flagged", "closed", "labels_joined", "rule_states", "review_pending")
    assert {k: after["state"][k] for k in same} == {k: before[k] for k in same}
    assert before["halt"] == "RUNNING" and after["state"]["halt"] == "HALTED"  # never rebuilt to RUNNING
    assert {k: again["state"][k] for k in same} == {k: before[k] for k in same}
    # --since: only the 16 late events were read (from the beginning it would be 64), and they were applied
    assert later["replayed"]["events"] == 16 and later["state"]["conversations"] == before["conversations"] + 4
    RESULTS.append(Figures("Redis SIGKILLed and restarted empty, then vigil replay", after["replayed"]["events"],
                           before["conversations"] - after["state"]["conversations"], 0, 0, took,
                           "conversations, flagged, closed, labels joined, rule states and review queue as before; "
                           "the halt stays HALTED until two people clear it; recovery = the replay"))
