"""The evaluator against the real broker and Redis: scores and labels flow through Kafka."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluators.evaluator import Evaluator
from kafka_io import OutRecord, RecordProducer, ensure_topics
from tests.helpers import ROOT, chat_events, env_for, publish, read_topic, run_scorer, signed, values
from vigil.evaluate import run_evaluator
from vigil_core.clock import utcnow
from vigil_core.contracts import ClinicianLabel, ConversationFeedback, ConversationMessage, ReviewRequest

pytestmark = pytest.mark.slow


def label(cid, level, reviewer="r1", label_id=None, first_crisis_turn=None, ts=None):
    return ClinicianLabel(label_id=label_id or f"{cid}-{reviewer}-{level}", conversation_id=cid, level=level,
                          first_crisis_turn=first_crisis_turn, reviewer_id=reviewer, confidence=0.9,
                          ts=ts or utcnow())


def send(settings, labels):
    p = RecordProducer(settings)
    p.send_all([OutRecord(settings.topic_labels, lab.conversation_id, signed(settings, lab).to_bytes())
                for lab in labels])
    p.close()


@pytest.fixture
def scored(settings, resilient, model_cache):
    """Twelve conversations scored by the real scorer; every 4th has an explicit crisis turn."""
    s = settings.model_copy(update={"cache_dir": model_cache})
    ensure_topics(s)
    events = chat_events(12, turns=2, crisis_every=4)
    publish(s, events)
    run_scorer(s, resilient, max_idle_s=3.0)
    flagged = {d["conversation_id"] for d in values(read_topic(s, s.topic_scores)) if d["flagged"]}
    return s, flagged


def evaluate_once(settings, group_suffix="") -> dict:
    s = settings.model_copy(update={"evaluator_group": settings.evaluator_group + group_suffix})
    ev = run_evaluator(Evaluator(s), max_idle_s=3.0)
    return ev.to_dict()


def test_a_missed_crisis_the_warning_sign_route_sent_to_review_is_counted_apart(scored):
    """Issue 31: a conversation nothing flagged, sent to review because a user turn held a warning sign, that the
    clinician labels a crisis is a miss of the recall (the model's) and is counted apart in the evaluation and in
    `vigil_crises_found_by_warning_sign`; a replayed request counts once, and an ordinary one the route sent not at
    all."""
    s, flagged = scored
    assert "c00001" not in flagged and "c00002" not in flagged

    def request(cid):
        return ReviewRequest(review_id=f"{cid}:warning_sign", conversation_id=cid, reason="warning_sign", pi=1.0,
                             max_score=0.004, turns=[], requested_at=utcnow())

    p = RecordProducer(s)
    p.send_all([OutRecord(s.topic_review, cid, request(cid).to_bytes()) for cid in ("c00001", "c00001", "c00002")])
    p.close()
    send(s, [label("c00000", "high"), label("c00001", "moderate"), label("c00002", "no_risk")])
    evaluator = Evaluator(s)
    ev = run_evaluator(evaluator, max_idle_s=3.0).to_dict()
    assert ev["missed"] == ["c00001"] and ev["found_by_warning_sign"] == ["c00001"]
    assert ev["rates"]["crisis_recall"]["value"] == pytest.approx(1 / 2)
    assert evaluator.metrics.registry.get_sample_value("vigil_crises_found_by_warning_sign") == 1.0


def test_labels_join_predictions_and_duplicates_and_replays_do_not_move_the_numbers(scored):
    s, flagged = scored
    assert {"c00000", "c00004", "c00008"} <= flagged and "c00001" not in flagged
    labels = [label(cid, "high" if cid in ("c00000", "c00004", "c00008") else "no_risk", first_crisis_turn=2)
              for cid in (f"c{i:05d}" for i in range(12))]
    labels.append(label("c00001", "moderate", reviewer="r2"))  # a crisis the model missed, second reviewer
    labels.append(label("nope-1", "high"))  # unknown conversation
    send(s, labels)
    first = evaluate_once(s)
    rates = first["rates"]
    assert rates["crisis_recall"]["value"] == pytest.approx(3 / 4)
    assert rates["crisis_recall"]["n"] == pytest.approx(4)
    assert first["missed"] == ["c00001"]
    assert first["labels_for_unknown_conversations"] == 1
    rules = {r["rule"]: r for r in first["rules"]}
    assert rules["crisis_recall"]["state"] == "INSUFFICIENT_DATA"
    assert 0 <= rules["crisis_recall"]["lower"] <= 0.75 <= rules["crisis_recall"]["upper"] <= 1
    # the same labels again (a replay) and a duplicate label_id: nothing moves
    send(s, labels + [labels[0]])
    again = evaluate_once(s)
    assert again["rates"] == first["rates"]
    # a later label by the same reviewer replaces the earlier one
    send(s, [label("c00001", "no_risk", reviewer="r2", label_id="c00001-r2-fix")])
    fixed = evaluate_once(s)
    assert fixed["rates"]["crisis_recall"]["value"] == pytest.approx(1.0)
    # a second evaluator group (another process reading everything) agrees
    other = evaluate_once(s, group_suffix="-b")
    assert other["rates"] == fixed["rates"]


def test_two_evaluator_processes_and_a_restart_give_the_same_state(scored, tmp_path):
    s, flagged = scored
    labels = [label(f"c{i:05d}", "high" if f"c{i:05d}" in flagged else "low") for i in range(12)]
    send(s, labels[:6])
    cmd = [sys.executable, "-m", "vigil.cli", "evaluate", "--once", "--json", "--idle", "3", "--no-actions"]
    logs = [open(tmp_path / f"ev{i}.log", "w") for i in range(2)]  # noqa: SIM115 - closed below
    procs = [subprocess.Popen(cmd, env=env_for(s), stdout=subprocess.PIPE, stderr=logs[i], cwd=ROOT, text=True)
             for i in range(2)]
    for i, p in enumerate(procs):
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError((tmp_path / f"ev{i}.log").read_text()[-3000:]) from None
    for log in logs:
        log.close()
    send(s, labels[6:])
    # The restarted evaluator reads under a new group name: on this test broker (tansu) a third member
    # re-joining a group that two members just left can wait forever for its assignment (seen here).
    env = env_for(s.model_copy(update={"evaluator_group": s.evaluator_group + "-restarted"}))
    try:
        with open(tmp_path / "ev-restart.log", "w") as log:
            restarted = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, text=True,
                                       timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError((tmp_path / "ev-restart.log").read_text()[-6000:]) from None
    assert restarted.returncode == 0, (tmp_path / "ev-restart.log").read_text()[-2000:]
    final = json.loads(restarted.stdout.strip().splitlines()[-1])
    fresh = evaluate_once(s, group_suffix="-fresh")
    assert final["rates"] == fresh["rates"]
    assert final["rates"]["crisis_recall"]["value"] == pytest.approx(1.0)
    assert {r["rule"] for r in final["rules"]} >= {"crisis_recall", "crisis_recall_cusum", "sentinel",
                                                   "ai_latency_p95_ms", "ai_error_rate", "user_satisfaction"}
    assert all({"rule", "state", "value", "lower", "upper", "n"} <= set(r) for r in final["rules"])


def test_operational_rules_from_conversation_events(settings):
    s = settings
    ensure_topics(s)
    now = utcnow()
    slow = [ConversationMessage(event_id=f"a{i}", conversation_id=f"k{i}", user_id="u", turn=1, role="assistant",
                                text="ok", ts=now, latency_ms=12000.0 if i % 2 else 900.0,
                                error="timeout" if i < 3 else None) for i in range(200)]
    feedback = [ConversationFeedback(event_id=f"f{i}", conversation_id=f"k{i}", satisfaction=4, ts=now)
                for i in range(40)]
    publish(s, slow + feedback)
    rules = {r["rule"]: r for r in evaluate_once(s)["rules"]}
    assert rules["ai_latency_p95_ms"]["state"] == "CRITICAL" and rules["ai_latency_p95_ms"]["n"] == 200
    assert rules["ai_error_rate"]["state"] == "CRITICAL"  # 3/200 = 1.5% > 1%
    assert rules["ai_error_rate"]["value"] == pytest.approx(0.015)
    assert rules["user_satisfaction"]["state"] == "CRITICAL" and rules["user_satisfaction"]["value"] == 4


def test_a_transition_is_published_once_with_its_evidence(scored):
    s, flagged = scored
    assert not {"c00001", "c00002", "c00003"} & flagged
    seen = []
    labels = [label(f"c{i:05d}", "imminent") for i in range(4)]  # c00001-3 are missed imminent crises
    send(s, labels)
    ev = Evaluator(s, on_alert=seen.append)
    run_evaluator(ev, max_idle_s=3.0)
    run_evaluator(Evaluator(s.model_copy(update={"evaluator_group": s.evaluator_group + "-2"}), on_alert=seen.append),
        max_idle_s=3.0)
    sentinel = [a for a in seen if a.rule == "sentinel" and a.state == "CRITICAL"]
    assert sorted(a.evidence[0] for a in sentinel) == ["c00001", "c00002", "c00003"]
    assert len({a.evidence[0] for a in sentinel}) == len(sentinel)  # each published once
    assert all(a.state == "CRITICAL" for a in sentinel)


def test_only_labels_signed_by_the_review_app_for_an_enabled_account_count(scored):
    """Issue 20: any record on `clinician.labels` with any reviewer_id counted toward recall, so whoever could
    write to the topic could move the number the halt depends on. Each forgery is dead-lettered with its reason."""
    import redis

    from review.users import UserStore
    from vigil_core.label_signing import LabelSigner

    s, flagged = scored
    missed = label("c00001", "high", reviewer="r1")  # a genuine miss: recall 0 if it counts
    genuine = signed(s, missed)
    tampered = genuine.model_copy(update={"level": "no_risk"})  # a genuine signature on changed fields
    foreign = LabelSigner({"t1": b"x" * 40}).sign(label("c00002", "high", reviewer="r1", label_id="forged-key"))
    unknown_key = genuine.model_copy(update={"key_id": "t9", "label_id": "kid"})
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    users = UserStore(client, s.redis_prefix)
    leaver = signed(s, label("c00003", "imminent", reviewer="leaver"))
    users.disable("leaver")
    nobody = LabelSigner.from_settings(s).sign(label("c00005", "high", reviewer="ghost"))  # no such account
    unsigned = label("c00006", "high", reviewer="r1", label_id="plain")
    p = RecordProducer(s)
    p.send_all([OutRecord(s.topic_labels, lab.conversation_id, lab.to_bytes())
                for lab in (tampered, foreign, unknown_key, leaver, nobody, unsigned)])
    p.close()
    forged_only = evaluate_once(s)
    assert forged_only["rates"]["crisis_recall"]["n"] == 0  # none of them counted
    reasons = sorted(d["reason"] for d in values(read_topic(s, s.topic_dlq, expect=6)))
    assert reasons == sorted([
        "label signature does not match its fields", "label signature does not match its fields",
        "label signed with unknown key 't9'", "reviewer 'leaver' is not an enabled account",
        "reviewer 'ghost' is not an enabled account", "unsigned label"])
    send(s, [missed])  # the genuine label (send signs it as the review app does) counts
    assert evaluate_once(s)["rates"]["crisis_recall"]["n"] == 1


def test_an_adjudication_counts_only_from_a_clinical_lead(scored):
    """The adjudicated level replaces the reviewers' levels: a reviewer may not mark their own label as one."""
    import redis

    from review.users import UserStore

    s, _ = scored
    users = UserStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix)
    users.add("lead", "clinical_lead", "a lead's password 1")
    send(s, [label("c00001", "imminent", reviewer="r1"), label("c00001", "no_risk", reviewer="r2")])
    first = evaluate_once(s)
    assert first["missed"] == ["c00001"]  # disagreement waiting: the severe reading counts
    sneaky = label("c00001", "no_risk", reviewer="r2", label_id="c00001-r2-adj").model_copy(
        update={"adjudication": True})
    send(s, [sneaky])
    assert evaluate_once(s)["missed"] == ["c00001"]
    assert any("only a clinical lead adjudicates" in d["reason"] for d in values(read_topic(s, s.topic_dlq)))
    send(s, [label("c00001", "low", reviewer="lead").model_copy(update={"adjudication": True})])
    assert evaluate_once(s)["missed"] == []  # the lead decided: not a crisis


@pytest.mark.parametrize(("state", "code"), [("CRITICAL", 3), ("WARNING", 0)])
def test_evaluate_once_exits_3_when_a_rule_is_critical(settings, monkeypatch, capsys, state, code):
    """`vigil evaluate --once` is what a cron job or a deploy check runs: its exit status says CRITICAL."""
    import vigil.evaluate
    from vigil.cli import main

    class Evaluation:
        def to_dict(self):
            return {"rules": [{"rule": "crisis_recall", "state": state, "value": 0.86, "n": 80.0},
                              {"rule": "ai_error_rate", "state": "OK", "value": 0.001, "n": 500.0}]}

    monkeypatch.setattr(vigil.evaluate, "run_evaluator", lambda evaluator, max_idle_s=None: Evaluation())
    for name, value in env_for(settings).items():
        if name.startswith("VIGIL_"):
            monkeypatch.setenv(name, value)
    assert main(["evaluate", "--once", "--no-actions"]) == code
    assert "crisis_recall" in capsys.readouterr().out
