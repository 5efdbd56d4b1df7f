"""`vigil train --from-labels`'s data: review requests and signed labels from the real topics become redacted,
turn-labelled chat-form rows beside the base data, written only outside the repository."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kafka_io import OutRecord, RecordProducer, ensure_topics
from tests.helpers import signed
from vigil.train_from_labels import REPOSITORY, OutputInRepository, labelled_turns, write_training_data
from vigil_core.contracts import ClinicianLabel, ReviewRequest, ReviewTurn
from vigil_core.settings import Settings


def _request(cid: str, texts: list[str]) -> ReviewRequest:
    now = datetime.now(UTC)
    turns = []
    for i, text in enumerate(texts):
        turns.append(ReviewTurn(turn=2 * i, role="user", text=text, ts=now))
        turns.append(ReviewTurn(turn=2 * i + 1, role="assistant", text="I'm here with you.", ts=now))
    return ReviewRequest(review_id=f"{cid}:flagged", conversation_id=cid, reason="flagged", pi=1.0, max_score=0.9,
                         first_flagged_turn=0, turns=turns, requested_at=now)


def _label(cid: str, level: str, first: int | None, reviewer: str = "rev1", **extra: object) -> ClinicianLabel:
    return ClinicianLabel(label_id=f"{cid}-{reviewer}", conversation_id=cid, level=level, first_crisis_turn=first,
                          reviewer_id=reviewer, confidence=0.9, ts=datetime.now(UTC), **extra)  # type: ignore[arg-type]


def test_labelled_conversations_become_redacted_turn_rows_outside_the_repository(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    s = settings
    ensure_topics(s)
    records = [
        OutRecord(s.topic_review, "c1", _request("c1", [
            "hi, my name is Jonas Weber", "I'm so tired", "call me at +1 415 555 0134, I have the pills ready",
        ]).to_bytes()),
        OutRecord(s.topic_review, "c2", _request("c2", ["any tips for growing tomatoes?"]).to_bytes()),
        OutRecord(s.topic_review, "c3", _request("c3", ["I want to die"]).to_bytes()),
        OutRecord(s.topic_review, "c4", _request("c4", ["not labelled"]).to_bytes()),
        OutRecord(s.topic_labels, "c1", signed(s, _label("c1", "high", 2)).to_bytes()),
        OutRecord(s.topic_labels, "c2", signed(s, _label("c2", "no_risk", None)).to_bytes()),
        OutRecord(s.topic_labels, "c3", _label("c3", "imminent", 0).to_bytes()),  # unsigned: never counts
    ]
    producer = RecordProducer(s)
    producer.send_all(records)
    producer.close()

    rows = labelled_turns(s)
    by_turn = {(r.conversation_id, r.turn): r for r in rows}
    assert sorted(by_turn) == [("c1", 0), ("c1", 2), ("c1", 4), ("c2", 0)]  # user turns of labelled, signed only
    assert [by_turn[("c1", t)].crisis for t in (0, 2, 4)] == [False, True, True]  # from the first crisis turn on
    assert not by_turn[("c2", 0)].crisis
    assert "Jonas" not in by_turn[("c1", 0)].text and "555" not in by_turn[("c1", 4)].text  # redacted
    assert "[phone]" in by_turn[("c1", 4)].text

    base = tmp_path / "base"
    base.mkdir()
    for split in ("train", "validation", "test"):
        (base / f"chat_{split}.csv").write_text("id,text,label,conversation,turn,source,category,alone\n"
                                                f"{split}-0,hello,no_crisis,{split},0,team,greeting,no_crisis\n")
    for name in ("kinds_train.csv", "kinds_more_train.csv", "chitchat_validation.csv"):
        (base / name).write_text(f"id,text,label,conversation,turn,source,category,alone\n{name}-0,brb,no_crisis,x,0,"
                                 "chitchat,small_talk,no_crisis\n")
    counts = write_training_data(rows, base, tmp_path / "out")
    # the kinds set and the small talk go with the chat splits: a head fitted on them is fitted on them again
    for name in ("kinds_train.csv", "kinds_more_train.csv", "chitchat_validation.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (base / name).read_bytes()
    written = {}
    for split in ("train", "validation", "test"):
        with open(tmp_path / "out" / f"chat_{split}.csv", newline="", encoding="utf-8") as fh:
            written[split] = list(csv.DictReader(fh))
    added = [r for split in ("train", "validation") for r in written[split] if r["source"] == "clinician_labels"]
    assert len(added) == 4 == counts["train"] + counts["validation"]
    assert written["test"] == [{"id": "test-0", "text": "hello", "label": "no_crisis", "conversation": "test",
                                "turn": "0", "source": "team", "category": "greeting", "alone": "no_crisis"}]
    text_on_disk = "".join(p.read_text() for p in (tmp_path / "out").glob("*.csv"))
    assert "Jonas" not in text_on_disk and "555 0134" not in text_on_disk
    with pytest.raises(OutputInRepository):
        write_training_data(rows, base, REPOSITORY / "data" / "from-labels")
    assert not (REPOSITORY / "data" / "from-labels").exists()
