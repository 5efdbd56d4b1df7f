"""The model lifecycle against a real broker and Redis, demo-sized: a scorer follows the live-model record while
events stream; a candidate worse on recall is shadowed, compared on clinicians' labels and cannot be promoted; an
equal one can, and the swap loses and doubles no event; a rollback is effective at once and a replay then gives the
rolled-back-to version's scores; a candidate that flags what the champion does not raises those conversations'
review sampling."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from evaluators.compare import compare_live
from evaluators.store import EvaluatorStore
from models.artifact import ARTIFACT_FILE, DEFAULT_MODEL_DIR
from pipeline.live_models import LiveModelSwitch, champion_scorer
from pipeline.scorer import Scorer
from review.users import UserStore
from tests.helpers import env_for, model_copy, publish, read_topic, signed, values, wait_until
from vigil.cli import main
from vigil.replay import _replay_shadow
from vigil_core.contracts import ClinicianLabel, ConversationClosed, ConversationMessage
from vigil_core.conversations import ConversationStore
from vigil_core.model_record import ModelRecord, ShadowStore
from vigil_core.settings import Settings

# Crisis the model reads (each above the urgent level) in words of neither the lexicon's strong tier nor its imminent
# phrases: those flag a turn whatever a model scores (the champion and the shadow alike), so a candidate that flags
# nothing would not look blind on "I want to die".
CRISIS_TURNS = ["i just want all of this to stop for good",
                "there is no point in anything anymore, i want to disappear forever",
                "i feel like a burden to everyone and i want it to be over"]
ORDINARY_TURNS = ["can you recommend a podcast about history?", "any tips for growing tomatoes?",
                  "my sister is visiting this weekend", "can you explain how compound interest works?"]
PASSWORD = "correct horse battery staple"
# the shipped model's own urgent level (0.70): a promotion and a rollback must each bring their champion's
SHIPPED_URGENT = json.loads((DEFAULT_MODEL_DIR / ARTIFACT_FILE).read_text())["urgent_threshold"]


def _conversations(prefix: str, n: int, crisis_every: int = 2) -> tuple[list[Any], set[str]]:
    """n conversations of two user turns (and a reply) and a close; every `crisis_every`-th in crisis."""
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    events: list[Any] = []
    crisis = set()
    for c in range(n):
        cid = f"{prefix}{c:03d}"
        is_crisis = crisis_every > 0 and c % crisis_every == 0
        crisis |= {cid} if is_crisis else set()
        for t in range(2):
            text = CRISIS_TURNS[c % 3] if is_crisis and t == 1 else ORDINARY_TURNS[(c + t) % 4]
            ts = start + timedelta(seconds=c * 10 + t)
            events.append(ConversationMessage(event_id=f"{cid}-u{t}", conversation_id=cid, user_id=f"u{c}",
                                              turn=2 * t, role="user", text=text, ts=ts))
            events.append(ConversationMessage(event_id=f"{cid}-a{t}", conversation_id=cid, user_id=f"u{c}",
                                              turn=2 * t + 1, role="assistant", text="I hear you.", ts=ts))
        events.append(ConversationClosed(event_id=f"{cid}-x", conversation_id=cid,
                                         ts=start + timedelta(seconds=c * 10 + 5)))
    return events, crisis


def _label(s: Settings, cids: list[str], crisis: set[str]) -> None:
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    store = EvaluatorStore(client, s.redis_prefix, s.label_wait_s)
    for cid in cids:
        label = signed(s, ClinicianLabel(conversation_id=cid, level="high" if cid in crisis else "no_risk",
                                         first_crisis_turn=2 if cid in crisis else None, reviewer_id="rev1",
                                         confidence=0.9, ts=datetime.now(UTC), label_id=f"lab-{cid}"))
        assert store.apply_label(label) == "applied"


def _cli(monkeypatch: pytest.MonkeyPatch, s: Settings, *argv: str) -> int:
    for name, value in env_for(s).items():
        if name.startswith("VIGIL_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    return main(list(argv))


def _scores(s: Settings, event_ids: set[str]) -> list[dict[str, Any]]:
    return [v for v in values(read_topic(s, s.topic_scores, settle_s=0.5)) if v["event_id"] in event_ids]


def _user_event_ids(events: list[Any]) -> set[str]:
    return {e.event_id for e in events if isinstance(e, ConversationMessage) and e.role == "user"}


def test_shadow_compare_promote_swap_rollback_and_replay(settings: Settings, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> None:
    s = settings.model_copy(update={
        "model_store": tmp_path / "store", "model_backend": "torch", "cache_dir": model_cache,
        "topic_scores_shadow": settings.topic_scores + "-shadow", "promote_min_crisis": 6,
        "sweep_interval_s": 3600.0})
    client = redis.Redis.from_url(s.redis_url.get_secret_value())
    users = UserStore(client, s.redis_prefix)
    users.add("lead", "clinical_lead", PASSWORD)
    users.add("oncall", "oncall_engineer", PASSWORD)
    users.add("rev2", "reviewer", PASSWORD)
    assert _cli(monkeypatch, s, "model", "register", str(model_copy(tmp_path, "blind", threshold=0.9999999)),
                "--note", "flags nothing") == 0
    # "same" scores as the shipped model does but names its own urgent level: a promotion must bring it along
    assert _cli(monkeypatch, s, "model", "register", str(model_copy(tmp_path, "same", note="retrained, same",
                                                                    urgent_threshold=0.8))) == 0
    assert _cli(monkeypatch, s, "model", "register", str(model_copy(tmp_path, "keen", threshold=1e-9))) == 0
    entries = {json.loads((p / "vigil_model.json").read_text()).get("threshold"): p.name
               for p in (s.model_store / "versions").iterdir()}
    blind, keen = entries[0.9999999], entries[1e-9]
    same = next(v for v in entries.values() if v not in (blind, keen))

    record = ModelRecord(client, s.redis_prefix)
    switch = LiveModelSwitch(s, record)
    champion, start = champion_scorer(s, switch)
    default_version = champion.model.model_version
    scorer = Scorer(s, champion, switch=switch)
    switch.metrics = scorer.metrics
    scorer.apply_switch(start)
    assert s.urgent_threshold is None and scorer.urgent_threshold == SHIPPED_URGENT != 0.8  # its own level
    runner = threading.Thread(target=scorer.run, daemon=True)
    runner.start()
    try:
        # 1. A candidate that flags nothing, in shadow: its recall is lower, promotion is refused.
        assert _cli(monkeypatch, s, "model", "shadow", blind, "--by", "lead", "--password-stdin") == 0
        assert wait_until(lambda: scorer.shadow is not None and scorer.shadow.version == blind, timeout_s=60)
        events_a, crisis_a = _conversations("a", 12)
        publish(s, events_a)
        cids_a = sorted({e.conversation_id for e in events_a})
        shadows = ShadowStore(client, s.redis_prefix, s.label_wait_s)
        assert wait_until(lambda: all(r.turns == 2 for r in shadows.read_many(cids_a, blind).values()), timeout_s=90)
        assert wait_until(lambda: all(ConversationStore(client, s.redis_prefix, s.label_wait_s)
                                      .read_many(cids_a)[c].closed for c in cids_a), timeout_s=60)
        _label(s, cids_a, crisis_a)
        worse = compare_live(client, s.redis_prefix, s.label_wait_s)
        assert worse is not None and worse.n == 12 and worse.n_crisis == 6
        assert worse.recall_champion.value == 1.0 and worse.recall_candidate.value == 0.0
        assert worse.recall_difference.value == -1.0
        assert _cli(monkeypatch, s, "model", "promote", blind, "--by", "lead", "--password-stdin",
                    "--reason", "try") == 1
        assert record.read().champion == "default"
        # shadow scores: keyed by conversation, versioned, naming the champion that scored the same turn
        shadow_records = read_topic(s, s.topic_scores_shadow, expect=24)
        assert {r.key.decode() for r in shadow_records} == set(cids_a)
        assert all(json.loads(r.value)["conversation_id"] == r.key.decode() for r in shadow_records)
        assert {(v["model_version"], v["champion_version"], v["flagged"]) for v in values(shadow_records)} == {
            (blind, default_version, False)}
        # a turn holding an explicit phrase is flagged in shadow as the champion flags it, whatever the model scored
        publish(s, [ConversationMessage(event_id="explicit-u0", conversation_id="explicit", user_id="ux", turn=0,
                                        role="user", text="I want to die", ts=datetime.now(UTC))])
        explicit = [json.loads(r.value) for r in read_topic(s, s.topic_scores_shadow, expect=25)
                    if r.key == b"explicit"]
        assert [(v["model_version"], v["flagged"]) for v in explicit] == [(blind, True)]
        assert explicit[0]["score"] < 0.9999999  # the blind model's own score is below its threshold

        # 2. An equal candidate: promoted by a clinical lead (not by a reviewer), while events stream; the swap
        # loses and doubles nothing, and every batch is one version's.
        assert _cli(monkeypatch, s, "model", "shadow", same, "--by", "oncall", "--password-stdin") == 0
        assert wait_until(lambda: scorer.shadow is not None and scorer.shadow.version == same, timeout_s=60)
        events_b, crisis_b = _conversations("b", 12)
        publish(s, events_b)
        cids_b = sorted({e.conversation_id for e in events_b})
        assert wait_until(lambda: all(r.turns == 2 for r in shadows.read_many(cids_b, same).values()), timeout_s=90)
        # the shadow scores in its own thread: the champion's states may come after the shadow's
        assert wait_until(lambda: all(ConversationStore(client, s.redis_prefix, s.label_wait_s)
                                      .read_many(cids_b)[c].closed for c in cids_b), timeout_s=60)
        _label(s, cids_b, crisis_b)
        assert _cli(monkeypatch, s, "model", "promote", same, "--by", "rev2", "--password-stdin",
                    "--reason", "x") == 1  # a reviewer may not promote
        events_c, _ = _conversations("c", 40, crisis_every=5)
        chunks = [events_c[i:i + 25] for i in range(0, len(events_c), 25)]
        streamer = threading.Thread(target=lambda: [publish(s, chunk) or time.sleep(0.3) for chunk in chunks])
        streamer.start()
        time.sleep(0.5)
        assert _cli(monkeypatch, s, "model", "promote", same, "--by", "lead", "--password-stdin",
                    "--reason", "equal recall, retrained") == 0
        streamer.join()
        live = record.read()
        assert (live.champion, live.previous, live.shadow) == (same, "default", "")
        ids_c = _user_event_ids(events_c)
        assert wait_until(lambda: len({v["event_id"] for v in _scores(s, ids_c)}) == len(ids_c), timeout_s=120)
        assert wait_until(lambda: scorer.model_version == same, timeout_s=30)
        assert scorer.urgent_threshold == 0.8  # the promoted model's level came with it
        scored_c = read_topic(s, s.topic_scores, settle_s=1.0)
        mine = [r for r in scored_c if json.loads(r.value)["event_id"] in ids_c]
        assert Counter(json.loads(r.value)["event_id"] for r in mine) == Counter(ids_c)  # once each, none lost
        assert {json.loads(r.value)["model_version"] for r in mine} <= {default_version, same}
        for partition in {r.partition for r in mine}:  # per partition: the old version's scores, then the new's
            order = [json.loads(r.value)["model_version"] for r in sorted(mine, key=lambda r: r.offset)
                     if r.partition == partition]
            assert order == sorted(order, key=lambda v: v == same)

        # 3. Rollback by the on-call engineer: the previous champion scores from the next batch.
        assert _cli(monkeypatch, s, "model", "rollback", "--by", "oncall", "--password-stdin",
                    "--reason", "detection failure") == 0
        assert record.read().champion == "default"
        assert wait_until(lambda: scorer.model_version == default_version, timeout_s=10)
        assert scorer.urgent_threshold == SHIPPED_URGENT  # and the rollback's
        events_d, _ = _conversations("d", 6)
        publish(s, events_d)
        ids_d = _user_event_ids(events_d)
        assert wait_until(lambda: len(_scores(s, ids_d)) == len(ids_d), timeout_s=60)
        assert {v["model_version"] for v in _scores(s, ids_d)} == {default_version}

        # 4. A candidate that flags every turn: conversations it flags and the champion does not are sampled for
        # review at pi_disagreement, recorded as usual.
        assert _cli(monkeypatch, s, "model", "shadow", keen, "--by", "lead", "--password-stdin") == 0
        assert wait_until(lambda: scorer.shadow is not None and scorer.shadow.version == keen, timeout_s=60)
        events_e, _ = _conversations("e", 8, crisis_every=0)
        publish(s, events_e)
        cids_e = sorted({e.conversation_id for e in events_e})
        conversations = ConversationStore(client, s.redis_prefix, s.label_wait_s)
        assert wait_until(lambda: all(conversations.read_many(cids_e)[c].closed for c in cids_e), timeout_s=60)
        states = conversations.read_many(cids_e)
        assert {(states[c].flagged, states[c].pi) for c in cids_e} == {(False, s.pi_disagreement)}
        assert {states[c].review for c in cids_e} <= {"disagreement", "not_sampled"}
    finally:
        scorer.stop()
        runner.join(timeout=60)

    # Audited and announced.
    actions = [c["action"] for c in record.changes()]
    assert actions == ["shadow", "shadow", "promote", "rollback", "shadow"]
    titles = [v.get("title") for v in values(read_topic(s, s.topic_incidents, settle_s=0.5))]
    assert titles.count("Crisis model changed") >= 5

    # 5. Replay after the rollback, as `vigil replay` runs it: the conversations the promoted version scored get
    # the rolled-back-to version's scores, and the keen candidate's conversations their disagreement pi again
    # (their state and the shadow's scores lost, the shadow's restored from its topic first).
    cids_c = sorted({e.conversation_id for e in events_c})
    lost = cids_c + cids_e
    client.delete(*[conversations.pred_key(c) for c in lost], *[conversations.turns_key(c) for c in lost],
                  *[conversations.embeddings_key(c) for c in lost], *[shadows.key(c) for c in cids_e])
    assert _replay_shadow(s, lambda rec: True) >= 24 + 24 + 16  # sets a, b (and part of c), e
    replay_settings = s.model_copy(update={"scorer_group": s.scorer_group + "-replay"})
    champion_again, start_again = champion_scorer(replay_settings, LiveModelSwitch(replay_settings, record),
                                                  shadow=False)
    replayer = Scorer(replay_settings, champion_again, replay=True)
    replayer.apply_switch(start_again)
    replayer.run(max_idle_s=4.0)
    replayed = conversations.read_many(lost)
    assert {replayed[c].model_version for c in cids_c} == {default_version}
    assert all((replayed[c].pi, replayed[c].review) == (states[c].pi, states[c].review) for c in cids_e)
    assert {replayed[c].pi for c in cids_e} == {s.pi_disagreement}
