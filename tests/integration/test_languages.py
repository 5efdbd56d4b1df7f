"""Every language a person writes in (issue 32), through a real scorer against the real broker and Redis: each
turn of the team's language test set (data/languages/turns.csv) opens a conversation of its own, after a greeting in
its language, and is closed. Every crisis conversation in Spanish, Portuguese, French and German must be flagged
or sent to clinicians; the ordinary ones are sent at `pi_language`, exactly as the hash of their ids decides."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from evaluators.evaluator import Evaluator
from kafka_io import OutRecord, RecordProducer, ensure_topics
from models.multilingual import MultilingualModel
from pipeline.sampling import uniform_from_id
from tests.helpers import publish, read_topic, run_scorer, signed, values
from vigil.evaluate import run_evaluator
from vigil_core.clock import utcnow
from vigil_core.contracts import ClinicianLabel, ConversationClosed, ConversationMessage
from vigil_core.conversations import ConversationStore

pytestmark = pytest.mark.slow

TURNS = Path(__file__).resolve().parents[2] / "data" / "languages" / "turns.csv"
GREETING = {"es": "hola, buenas tardes", "pt": "oi, boa tarde", "fr": "bonjour, bonsoir", "de": "hallo, guten abend"}


def test_no_crisis_in_spanish_portuguese_french_or_german_is_scored_as_ordinary(settings, model_cache, resilient):
    s = settings.model_copy(update={"batch_size": 64, "cache_dir": model_cache, "pi_language": 0.25})
    ensure_topics(s)
    rows = list(csv.DictReader(TURNS.open(encoding="utf-8")))
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    events: list[ConversationMessage | ConversationClosed] = []
    for k, row in enumerate(rows):
        cid = f"lang-{row['language']}-{k:03d}"
        ts = start + timedelta(seconds=k)
        for turn, text in enumerate((GREETING[row["language"]], row["text"])):
            events.append(ConversationMessage(event_id=f"{cid}-u{turn}", conversation_id=cid, user_id=f"u{k}",
                                              turn=2 * turn, role="user", text=text, ts=ts))
        events.append(ConversationClosed(event_id=f"{cid}-x", conversation_id=cid, ts=ts + timedelta(seconds=1)))
    publish(s, events)
    run_scorer(s, resilient)

    scores = values(read_topic(s, s.topic_scores, expect=2 * len(rows)))
    reviews = values(read_topic(s, s.topic_review, settle_s=2.0))
    flagged = {d["conversation_id"] for d in scores if d["flagged"]}
    reviewed = {r["conversation_id"]: r for r in reviews}
    crisis = {f"lang-{r['language']}-{k:03d}" for k, r in enumerate(rows) if r["label"] == "crisis"}
    ordinary = {f"lang-{r['language']}-{k:03d}" for k, r in enumerate(rows) if r["label"] == "no_crisis"}
    # every crisis conversation reaches a clinician (here: all of them flagged)
    assert crisis <= flagged and crisis <= set(reviewed)
    # and the multilingual model flags every crisis turn it reads by itself, the lexicons aside; it reads the turns
    # identified as its languages only (a turn read as Galician or Italian is left to the route and the lexicons)
    model = MultilingualModel.load()
    turn2 = {d["conversation_id"]: d for d in scores if d["turn"] == 2}
    read = {c for c, d in turn2.items() if d["language"] in model.languages}
    assert all(turn2[c]["multilingual_score"] is not None for c in read)
    assert all((d["multilingual_score"] is None) == (d["language"] not in model.languages) for d in scores)
    assert len(read & crisis) >= 0.9 * len(crisis)
    assert all(turn2[c]["multilingual_score"] >= model.threshold for c in read & crisis)
    # each score names its turn's language; a review request its conversation's
    assert {d["language"] for d in scores if d["turn"] == 2} <= {"es", "pt", "fr", "de", "gl", "it", "ca"}
    assert all(reviewed[c]["language"] not in (None, "en") for c in crisis)
    # the ordinary ones: none reads as English, so each is reviewed at pi_language at least, exactly those the hash
    # selects (the multilingual model flags some of them, and the English model puts some in its borderline band:
    # text it cannot read scores at random; those are reviewed for that reason instead)
    by_model = {c for c in ordinary if c in reviewed and reviewed[c]["reason"] in ("flagged", "borderline")}
    routed = {c for c in ordinary if c in reviewed and reviewed[c]["reason"] == "language"}
    assert all(reviewed[c]["pi"] == 0.25 for c in routed)
    assert routed == {c for c in ordinary - by_model if uniform_from_id(c) < 0.25}
    assert all(reviewed[c]["pi"] >= 0.25 for c in by_model)
    sent = routed | by_model
    print(f"\nordinary conversations in es/pt/fr/de sent to review: {len(sent)} of {len(ordinary)} "
          f"({len(sent) / len(ordinary):.0%}): {len(routed)} by the language route at pi_language 0.25, "
          f"{len(by_model)} by a model's score; crisis conversations flagged: {len(crisis & flagged)} of "
          f"{len(crisis)}, {len(read & crisis)} read by the multilingual model")
    # the state keeps each user turn's language vote, so a replay routes the conversation the same way
    store = ConversationStore(redis.Redis.from_url(s.redis_url.get_secret_value()), s.redis_prefix, 3600)
    state = store.read_many(["lang-es-000"])["lang-es-000"]
    assert state.language not in (None, "en") and set(state.languages) == {0, 2}


def test_the_evaluator_reports_crisis_recall_per_language_group_and_warns_when_one_is_too_thin(
        settings, model_cache, resilient):
    s = settings.model_copy(update={"cache_dir": model_cache})
    ensure_topics(s)
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    talks = {"en-1": "I keep thinking about killing myself tonight", "en-2": "can you help me plan my week please",
             "es-1": "ya no quiero vivir más, esta noche me voy a matar", "es-2": "estoy muy cansado últimamente"}
    publish(s, [ConversationMessage(event_id=f"{cid}-u0", conversation_id=cid, user_id="u", turn=0, role="user",
                                    text=text, ts=start) for cid, text in talks.items()])
    run_scorer(s, resilient, max_idle_s=3.0)
    flagged = {d["conversation_id"] for d in values(read_topic(s, s.topic_scores, expect=4)) if d["flagged"]}
    assert {"en-1", "es-1"} <= flagged and "es-2" not in flagged
    # clinicians: en-1, es-1 and es-2 are crises (es-2 missed by Vigil), en-2 is not
    levels = {"en-1": "high", "en-2": "no_risk", "es-1": "imminent", "es-2": "moderate"}
    producer = RecordProducer(s)
    producer.send_all([OutRecord(s.topic_labels, cid, signed(s, ClinicianLabel(
        label_id=f"{cid}-r1", conversation_id=cid, level=level, reviewer_id="r1", confidence=0.9,
        ts=utcnow())).to_bytes()) for cid, level in levels.items()])
    producer.close()
    ev = run_evaluator(Evaluator(s), max_idle_s=3.0).to_dict()
    groups = ev["crisis_recall_by_language"]
    assert groups["en"]["value"] == 1.0 and groups["en"]["n"] == pytest.approx(1)
    assert groups["other"]["value"] == pytest.approx(0.5)  # Spanish: too few crisis labels to stand alone
    rule = {r["rule"]: r for r in ev["rules"]}["language_recall"]
    assert rule["state"] == "INSUFFICIENT_DATA" and "other" in rule["groups"]
