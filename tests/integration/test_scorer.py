"""The scorer against the real broker and Redis, with the real default model."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import defaultdict

import pytest
import redis

from demo.local import LocalBroker
from kafka_io import ensure_topics
from pipeline.scorer import Scorer
from tests.helpers import NoClose as _NoClose
from tests.helpers import chat_events, publish, read_topic, run_scorer, values, vigil, wait_until
from vigil_core.conversations import ConversationStore

pytestmark = pytest.mark.slow


@pytest.fixture
def scorer_settings(settings, model_cache):
    return settings.model_copy(update={"batch_size": 32, "cache_dir": model_cache, "heartbeat_interval_s": 0.2})


def state_snapshot(settings) -> dict:
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    out = {}
    for key in client.scan_iter(f"{settings.redis_prefix}pred:*"):
        pred = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        out[key.decode().split("pred:", 1)[1]] = pred
    for cid in out:
        turns = client.hgetall(f"{settings.redis_prefix}turns:{cid}")
        out[cid]["turns"] = {k.decode(): json.loads(v) for k, v in turns.items()}
    return out


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for cid in a:
        x, y = dict(a[cid]), dict(b[cid])
        assert float(x.pop("max_score")) == pytest.approx(float(y.pop("max_score")), abs=1e-5), cid
        tx, ty = x.pop("turns"), y.pop("turns")
        assert tx.keys() == ty.keys()
        for k in tx:
            for field in ("score", "response_risk"):  # the same to float precision (batches differ in size)
                sx, sy = tx[k].pop(field, None), ty[k].pop(field, None)
                assert (sx is None) == (sy is None) and (sx is None or abs(sx - sy) < 1e-3), (cid, k, field)
            assert tx[k] == ty[k]
        assert x == y, cid


def test_every_user_turn_is_scored_once_keyed_and_in_order_and_bad_records_go_to_the_dlq(
    scorer_settings, resilient
):
    s = scorer_settings
    ensure_topics(s)
    events = chat_events(20, turns=3)
    bad = [
        ("c-bad-1", b"{not json"),
        ("c-bad-2", json.dumps({"schema": "conversation.message/9"}).encode()),
        ("c-bad-3", json.dumps({**json.loads(events[0].to_bytes()), "event_id": "big",
                                "text": "x" * (s.max_text_bytes + 1)}).encode()),
        (None, b"\xff\xfe"),
        ("c-bad-4", json.dumps({**json.loads(events[0].to_bytes()), "turn": "two"}).encode()),
        ("not-its-conversation", events[1].to_bytes()),  # valid, but keyed off its conversation's partition
    ]
    publish(s, events, raw=bad)
    run_scorer(s, resilient)
    user_turns = [e for e in events if e.role == "user"]
    scores = read_topic(s, s.topic_scores, expect=len(user_turns))
    decoded = values(scores)
    assert sorted(d["event_id"] for d in decoded) == sorted(e.event_id for e in user_turns)
    for rec, d in zip(scores, decoded, strict=True):
        assert rec.key.decode() == d["conversation_id"]
        assert d["schema"] == "safety.score/1" and 0 <= d["score"] <= 1 and d["backup"] is False
    by_conv = defaultdict(list)
    for d in decoded:
        by_conv[d["conversation_id"]].append(d["turn"])
    assert all(turns == sorted(turns) for turns in by_conv.values())
    # crisis turns are flagged, benign ones mostly not
    flagged = {d["event_id"] for d in decoded if d["flagged"]}
    assert {"c00000-u2", "c00004-u2", "c00008-u2"} <= flagged
    assert "c00001-u0" not in flagged
    dlq = values(read_topic(s, s.topic_dlq, expect=len(bad)))
    assert len(dlq) == len(bad)
    reasons = sorted(d["reason"].split(":")[0] for d in dlq)
    assert reasons == sorted(["<json>", "schema", "text", "<record>", "turn", "<key>"])
    assert all(d["schema"] == "safety.dlq/1" and d["raw"] and d["topic"] == s.topic_events for d in dlq)
    # one review request per flagged conversation, pi 1, with the turns so far (urgent when the turn scored at the
    # urgent level: these crisis turns are explicit)
    reviews = values(read_topic(s, s.topic_review))
    flagged_convs = {d["conversation_id"] for d in decoded if d["flagged"]}
    assert sorted(r["conversation_id"] for r in reviews if r["reason"] in ("flagged", "urgent")) == sorted(
        flagged_convs)
    assert len(reviews) == len(flagged_convs)  # one each: urgent replaced flagged in the same batch
    r0 = next(r for r in reviews if r["conversation_id"] == "c00000")
    assert r0["pi"] == 1 and r0["first_flagged_turn"] == 4 and [t["turn"] for t in r0["turns"]] == [0, 1, 2, 3, 4, 5]
    # redis state
    store = ConversationStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix, 3600)
    st = store.read_many(["c00000", "c00001"])
    assert st["c00000"].flagged and st["c00000"].first_flagged_turn == 4 and st["c00000"].review == "flagged"
    assert not st["c00001"].flagged


def test_replaying_the_same_events_changes_nothing(scorer_settings, resilient):
    s = scorer_settings
    events = chat_events(8, turns=2)
    publish(s, events)
    run_scorer(s, resilient)
    first = state_snapshot(s)
    reviews_before = len(read_topic(s, s.topic_review))
    # a second group replays everything from the start against the same Redis
    replay = s.model_copy(update={"scorer_group": s.scorer_group + "-replay", "topic_review": s.topic_review})
    run_scorer(replay, resilient)
    assert_same_state(first, state_snapshot(s))
    assert len(read_topic(s, s.topic_review)) == reviews_before  # no second flagged review


def test_closing_samples_unflagged_conversations_deterministically(scorer_settings, resilient):
    from pipeline.sampling import SamplingPolicy
    from vigil_core.contracts import ConversationClosed

    s = scorer_settings.model_copy(update={"pi_floor": 0.3})
    events = chat_events(30, turns=1, crisis_every=0)
    closes = [ConversationClosed(event_id=f"close-{e.conversation_id}", conversation_id=e.conversation_id,
                                 ts=e.ts) for e in events if e.role == "user"]
    publish(s, events + closes)
    run_scorer(s, resilient)
    reviews = values(read_topic(s, s.topic_review))
    policy = SamplingPolicy(resilient.threshold, 0.3, s.pi_borderline, s.borderline_band)
    store = ConversationStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix, 3600)
    states = store.read_many([c.conversation_id for c in closes])
    expected = {cid for cid, st in states.items() if policy.decide(cid, st.max_score, False).selected}
    assert {r["conversation_id"] for r in reviews} == expected
    assert 0 < len(expected) < 30
    for r in reviews:
        if states[r["conversation_id"]].flagged:
            assert r["reason"] in ("flagged", "urgent") and r["pi"] == 1
        else:
            assert r["reason"] in ("sampled", "borderline") and r["pi"] >= 0.3
    assert all(st.closed and st.pi is not None and st.pi >= 0.3 for st in states.values())
    assert sum(not st.flagged for st in states.values()) > 0


def test_idle_conversations_are_closed_by_the_sweep(scorer_settings, resilient):
    s = scorer_settings.model_copy(update={"conversation_idle_s": 1.0, "sweep_interval_s": 0.2, "pi_floor": 1.0})
    publish(s, chat_events(3, turns=1, crisis_every=0))
    run_scorer(s, resilient, max_idle_s=3.0)
    store = ConversationStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix, 3600)
    states = store.read_many(["c00000", "c00001", "c00002"])
    assert all(st.closed for st in states.values())
    reviews = values(read_topic(s, s.topic_review))
    assert sorted(r["conversation_id"] for r in reviews) == ["c00000", "c00001", "c00002"]


def _all_scored(s, events) -> set[str]:
    want = {e.event_id for e in events if e.role == "user"}
    return want - {d["event_id"] for d in values(read_topic(s, s.topic_scores, settle_s=0.5))}


@pytest.mark.parametrize("instances", [1, 2])
def test_a_killed_scorer_loses_no_event(scorer_settings, resilient, tmp_path, instances):
    s = scorer_settings.model_copy(update={"batch_size": 8})
    ensure_topics(s)
    events = chat_events(60, turns=2)
    publish(s, events)
    procs = [vigil(["score"], s, tmp_path / f"scorer{i}.log") for i in range(instances)]
    try:
        # kill the first one mid-stream, once some scores are out
        assert wait_until(lambda: len(read_topic(s, s.topic_scores, settle_s=0.2)) >= 10, timeout_s=90)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        if instances == 1:
            procs.append(vigil(["score"], s, tmp_path / "scorer-restarted.log"))
        assert wait_until(lambda: not _all_scored(s, events), timeout_s=120, every=1.0), (
            (tmp_path / "scorer0.log").read_text()[-2000:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    crashed = state_snapshot(s)
    # the same events through one uninterrupted scorer, in a fresh namespace
    ref = s.model_copy(update={"scorer_group": s.scorer_group + "-ref", "redis_prefix": s.redis_prefix + "ref:",
                               "topic_scores": s.topic_scores + "-ref", "topic_review": s.topic_review + "-ref"})
    from models.response_safety import ResponseSafetyModel

    run_scorer(ref, resilient, response_model=ResponseSafetyModel.load())  # as `vigil score` runs
    assert_same_state(crashed, state_snapshot(ref))


def test_sigterm_finishes_the_batch_commits_and_exits_0(scorer_settings, tmp_path):
    s = scorer_settings
    ensure_topics(s)
    events = chat_events(10, turns=1)
    publish(s, events)
    proc = vigil(["score"], s, tmp_path / "scorer.log")
    assert wait_until(lambda: not _all_scored(s, events), timeout_s=90, every=0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    committed = admin.list_group_offsets(s.scorer_group)[s.scorer_group]
    admin.close()
    assert sum(o.offset for o in committed.values()) == len(events)


def test_heartbeat_is_written_while_the_loop_is_healthy(scorer_settings, resilient):
    s = scorer_settings
    publish(s, chat_events(2, turns=1))
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    scorer = Scorer(s, _NoClose(resilient))
    t = threading.Thread(target=scorer.run, kwargs={"max_idle_s": 6.0})
    t.start()
    try:
        beat = wait_until(lambda: client.get(f"{s.redis_prefix}heartbeat:scorer"), timeout_s=20)
        assert beat and "lag" in json.loads(beat)
        assert 0 < client.pttl(f"{s.redis_prefix}heartbeat:scorer") <= s.heartbeat_ttl_s * 1000
    finally:
        scorer.stop()
        t.join()


def test_a_broker_restart_does_not_wedge_the_scorer(scorer_settings, resilient, tmp_path):
    broker = LocalBroker(log_dir=tmp_path)
    broker.start()
    s = scorer_settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    try:
        ensure_topics(s)
        publish(s, chat_events(3, turns=1, prefix="before"))
        scorer = Scorer(s, _NoClose(resilient))
        t = threading.Thread(target=scorer.run, kwargs={"max_idle_s": 60.0})
        t.start()
        assert wait_until(lambda: len(read_topic(s, s.topic_scores, settle_s=0.2)) >= 3, timeout_s=60)
        broker.restart()  # memory storage: topics, data and offsets are gone
        time.sleep(1.0)
        ensure_topics(s)
        # The scorer's consumer may still hold its fetch positions from before the restart, and a fresh log that has
        # already reached them by its next fetch is read from there (Kafka cannot tell a wiped log from one that
        # grew). The same events again, with the same keys, refill every partition to exactly its old position, so
        # the new events lie at or after it whenever the scorer fetches; the refill is scored again or deduplicated.
        before = chat_events(3, turns=1, prefix="before")
        wait_until(lambda: _try_publish(s, before), timeout_s=30)
        after = chat_events(3, turns=1, prefix="after")
        assert _try_publish(s, after)
        got = wait_until(
            lambda: {d["event_id"] for d in values(read_topic(s, s.topic_scores, settle_s=0.3))}
            >= {e.event_id for e in after if e.role == "user"}, timeout_s=90, every=1.0)
        scorer.stop()
        t.join(timeout=60)
        assert got
    finally:
        broker.stop()


def _try_publish(s, events) -> bool:
    try:
        publish(s, events)
        return True
    except Exception:  # noqa: BLE001 - the broker may still be coming back
        return False


def _one_turn(cid: str, user_turn: int, text: str):
    from datetime import UTC, datetime, timedelta

    from vigil_core.contracts import ConversationMessage

    ts = datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=user_turn)
    return ConversationMessage(event_id=f"{cid}-u{user_turn}", conversation_id=cid, user_id="u1", turn=2 * user_turn,
                               role="user", text=text, ts=ts)


CONTEXT_TURNS = ["I feel heavy and slow lately", "like nothing I do matters", "I don't see the point in any of it"]


def test_a_turn_is_scored_with_its_earlier_turns_across_batches_and_a_replay_gives_the_same_scores(
    scorer_settings, resilient
):
    s = scorer_settings
    clf = resilient.model
    assert clf.uses_context  # the shipped model scores turns in context
    history: list = []
    expected = []
    for text in CONTEXT_TURNS:  # the scorer's contract, computed directly
        scored = clf.score_turns([text], [history])
        expected.append(float(scored.scores[0]))
        history.append(scored.embeddings[0])
    alone = clf.predict(CONTEXT_TURNS)
    assert expected[2] != alone[2]  # the last turn's score depends on the turns before it
    # Each turn in its own batch and its own scorer run: the context comes from Redis.
    for t, text in enumerate(CONTEXT_TURNS):
        publish(s, [_one_turn("ctx1", t, text)])
        run_scorer(s, resilient, max_idle_s=1.5)
    # All three in one batch: the context comes from the batch itself.
    publish(s, [_one_turn("ctx2", t, text) for t, text in enumerate(CONTEXT_TURNS)])
    run_scorer(s, resilient, max_idle_s=1.5)
    got = values(read_topic(s, s.topic_scores, expect=6))
    for cid in ("ctx1", "ctx2"):
        scores = [d["score"] for d in sorted((d for d in got if d["conversation_id"] == cid), key=lambda d: d["turn"])]
        assert scores == expected, cid  # exactly: float16 context embeddings, one unpadded row per run
    # A replay from the start (another group, the same Redis) publishes exactly the same scores again.
    replay = s.model_copy(update={"scorer_group": s.scorer_group + "-replay", "topic_scores": s.topic_scores + "-r"})
    run_scorer(replay, resilient)
    again = values(read_topic(replay, replay.topic_scores, expect=6))
    assert sorted((d["event_id"], d["score"]) for d in again) == sorted((d["event_id"], d["score"]) for d in got)


def test_an_explicit_phrase_the_model_scores_below_its_threshold_is_flagged_and_counted(scorer_settings, resilient):
    from datetime import UTC, datetime

    from vigil_core.contracts import ConversationMessage

    s = scorer_settings
    # "kms" is a phrase of the lexicon's strong tier (issue 31) which the shipped model, with its letters, reads in a
    # gamer's hyperbole at about a hundredth of its threshold: the tier flags it whatever the model scored (what the
    # rule costs, counted so that an alert sees it; the model catches every explicit crisis statement tried here).
    # The ordinary turn holds only a medium-tier word.
    texts = {"strong-1": "this boss fight is so hard kms lol",
             "strong-2": "Who's cutting onions?!"}
    now = datetime.now(UTC)
    publish(s, [ConversationMessage(event_id=f"{cid}-u0", conversation_id=cid, user_id=cid, turn=0, role="user",
                                    text=text, ts=now) for cid, text in texts.items()])
    scorer = run_scorer(s, resilient)
    scores = {d["conversation_id"]: d for d in values(read_topic(s, s.topic_scores, expect=2))}
    assert scores["strong-1"]["score"] < scores["strong-1"]["threshold"]  # the model scores it ordinary
    assert scores["strong-1"]["flagged"] and not scores["strong-2"]["flagged"]
    reviews = values(read_topic(s, s.topic_review, settle_s=1.0))
    assert [(r["conversation_id"], r["reason"]) for r in reviews] == [("strong-1", "flagged")]
    assert reviews[0]["turns"][0]["flagged_by"] == "strong phrase"  # the clinician sees why
    assert scorer.metrics.strong_phrase._value.get() == 1


def test_a_warning_sign_the_model_scores_low_sends_its_conversation_to_review_at_close(scorer_settings, resilient):
    """A conversation nothing flagged whose user turn held a warning sign (models.backup.WarningSigns) is reviewed at
    close with `pi_warning_sign` (reason `warning_sign`), its request kept around that turn, which names the sign; the
    sign is read from Redis when it came in an earlier batch than the close, and an ordinary conversation is not."""
    from datetime import UTC, datetime, timedelta

    from pipeline.sampling import SamplingPolicy
    from vigil_core.contracts import ConversationClosed, ConversationMessage

    s = scorer_settings.model_copy(update={"review_max_bytes": 4096})
    start = datetime.now(UTC) - timedelta(minutes=5)
    # a warning sign of the third blind set the shipped model scores low (0.0042 against 0.0127): a person said it
    sign = "i feel weirdly calm now that i've settled on a date"
    filler = "can you recommend a good book about the history of trains"
    conversations = {"sign-1": ["hey", sign], "sign-2": ["hey", "what's a good recipe for banana bread"],
                     "sign-3": [sign] + [filler] * 40}
    events = [ConversationMessage(event_id=f"{cid}-u{t}", conversation_id=cid, user_id=cid, turn=t, role="user",
                                  text=text, ts=start + timedelta(seconds=t))
              for cid, texts in conversations.items() for t, text in enumerate(texts)]
    publish(s, events)
    run_scorer(s, resilient)  # the turns in one run, the closes in the next: the sign is read back from Redis
    scores = {(d["conversation_id"], d["turn"]): d for d in values(read_topic(s, s.topic_scores, expect=len(events)))}
    assert not any(d["flagged"] for d in scores.values())  # the model scores the sign ordinary, as the blind set found
    publish(s, [ConversationClosed(event_id=f"close-{cid}", conversation_id=cid, ts=start + timedelta(minutes=1))
                for cid in conversations])
    scorer = run_scorer(s, resilient)
    reviews = {r["conversation_id"]: r for r in values(read_topic(s, s.topic_review, settle_s=1.0))}
    for cid in ("sign-1", "sign-3"):
        assert reviews[cid]["reason"] == "warning_sign" and reviews[cid]["pi"] == 1.0
        turns = {t["turn"]: t for t in reviews[cid]["turns"]}
        first = 1 if cid == "sign-1" else 0
        assert turns[first]["warning_sign"] == "calm after deciding" and turns[first]["text"] == sign
    assert reviews["sign-3"]["omitted_turns"] > 0  # bounded, around the sign
    ordinary = SamplingPolicy(resilient.threshold, s.pi_floor, s.pi_borderline, s.borderline_band)
    store = ConversationStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix, 3600)
    state = store.read_many(["sign-1", "sign-2"])
    assert state["sign-1"].warning_sign_turn == 1 and state["sign-2"].warning_sign_turn is None
    assert ("sign-2" in reviews) == ordinary.decide("sign-2", state["sign-2"].max_score, False).selected
    assert scorer.metrics.sampled.labels("warning_sign")._value.get() == 2
