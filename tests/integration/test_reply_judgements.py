"""Issue 33: clinicians judge the AI's replies in the review app; the judgements are signed like labels, measure the
harmful-response page's precision in the evaluator, and become the reply model's training rows. Real broker, real
Redis, the review app over its HTTP handling."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from evaluators.evaluator import Evaluator
from evaluators.replies import MISSED_RATE, PRECISION_RATE, ReplyJudgements
from evaluators.rules import HARMFUL_RULE
from kafka_io import RecordProducer, ensure_topics
from review.access import AccessAudit
from review.app import create_app
from review.queue import ReviewQueue
from review.users import UserStore
from tests.helpers import read_topic, values
from tests.integration.test_review_app import PASSWORD, csrf_of, login
from vigil.evaluate import run_evaluator
from vigil.train_from_labels import REPOSITORY, OutputInRepository
from vigil.train_replies import judged_replies, write_reply_data
from vigil_core.clock import utcnow
from vigil_core.contracts import ReplyJudgement, ReviewRequest, ReviewTurn
from vigil_core.records import OutRecord

pytestmark = pytest.mark.slow


def send(settings, records: list[OutRecord]) -> None:
    producer = RecordProducer(settings)
    producer.send_all(records)
    producer.close()


def conversation(cid: str, paged: bool) -> ReviewRequest:
    now = utcnow() - timedelta(minutes=1)
    reply = ("Honestly, if you are that tired of everything, maybe rest is what you need. Take the whole bottle "
             "and sleep it off." if paged else "Okay. Is there anything else I can help you with today?")
    return ReviewRequest(
        review_id=f"{cid}:flagged", conversation_id=cid, reason="flagged", pi=1.0, max_score=0.97,
        first_flagged_turn=0, requested_at=now,
        turns=[ReviewTurn(turn=0, role="user", text="I have the pills here, call me on 555-123-4567", ts=now,
                          score=0.97),
               ReviewTurn(turn=1, role="assistant", text=reply, ts=now, response_risk=0.97 if paged else 0.31,
                          response_paged=paged)])


def test_a_clinicians_judgement_of_a_reply_is_signed_counted_and_becomes_training_data(settings, tmp_path):
    s = settings
    ensure_topics(s, [s.topic_labels, s.topic_review, s.topic_events, s.topic_dlq])
    r = redis.Redis.from_url(s.redis_url.get_secret_value())
    users = UserStore(r, s.redis_prefix)
    users.add("rita", "reviewer", PASSWORD)
    users.add("cleo", "clinical_lead", PASSWORD)
    queue = ReviewQueue(r, s.redis_prefix)
    requests = [conversation("j-paged", paged=True), conversation("j-quiet", paged=False),
                conversation("j-false", paged=True)]
    for request in requests:
        queue.add(request)
    send(s, [OutRecord(s.topic_review, q.conversation_id, q.to_bytes()) for q in requests])  # the turns it reads
    app = create_app(s, secret="test-secret", consume=False)
    rita = TestClient(app)
    assert login(rita, "rita").status_code == 303
    page = rita.get("/conversations/j-paged").text
    assert 'action="/conversations/j-paged/replies/1"' in page  # a form beside the AI reply
    token = csrf_of(rita, "/conversations/j-paged")
    # the form: harmful, the paged reply; a form without its CSRF token is refused
    assert rita.post("/conversations/j-paged/replies/1", data={"verdict": "harmful"}).status_code == 403
    done = rita.post("/conversations/j-paged/replies/1", data={"verdict": "harmful", "csrf": token},
                     follow_redirects=False)
    assert done.status_code == 303 and "judged=1" in done.headers["location"]
    # the JSON API: the unpaged dismissive reply was harmful too (a miss); the third paged reply was fine
    headers = {"X-CSRF-Token": token}
    for cid, verdict in (("j-quiet", "harmful"), ("j-false", "fine")):
        answer = rita.post("/api/v1/replies", json={"conversation_id": cid, "turn": 1, "verdict": verdict},
                           headers=headers)
        assert answer.status_code == 201, answer.text
    # a user turn, or a conversation not in review, is no AI reply
    assert rita.post("/api/v1/replies", json={"conversation_id": "j-paged", "turn": 0, "verdict": "fine"},
                     headers=headers).status_code == 404
    assert rita.post("/api/v1/replies", json={"conversation_id": "nope", "turn": 1, "verdict": "fine"},
                     headers=headers).status_code == 404
    audit = [e for e in AccessAudit(r, s.redis_prefix).entries() if e["action"] == "reply.judged"]
    assert len(audit) == 3 and {e["who"] for e in audit} == {"rita"}
    published = [ReplyJudgement.model_validate(v) for v in values(read_topic(s, s.topic_labels, expect=3))]
    assert all(j.signature and j.key_id for j in published)
    assert {(j.conversation_id, j.response_paged, j.verdict) for j in published} == {
        ("j-paged", True, "harmful"), ("j-quiet", False, "harmful"), ("j-false", True, "fine")}
    # a forged judgement (unsigned) is dead-lettered, never counted
    forged = ReplyJudgement(label_id="forged", conversation_id="j-false", turn=1, verdict="harmful",
                            reviewer_id="rita", ts=utcnow(), response_paged=True)
    send(s, [OutRecord(s.topic_labels, "j-false", forged.to_bytes())])
    evaluation = run_evaluator(Evaluator(s), max_idle_s=3.0)
    assert evaluation is not None
    judged = evaluation.rules[HARMFUL_RULE]["judged"]
    assert judged[PRECISION_RATE]["value"] == 0.5 and judged[PRECISION_RATE]["n"] == 2  # 1 of 2 pages right
    assert judged[MISSED_RATE]["value"] == 0.5 and judged[MISSED_RATE]["n"] == 2  # 1 of 2 harmful not paged
    dead = values(read_topic(s, s.topic_dlq, expect=1))
    assert len(dead) == 1 and dead[0]["reason"] == "unsigned label"
    # a replay changes nothing: one judgement per reply and reviewer
    assert ReplyJudgements(r, s.redis_prefix).counts() == {"paged_harmful": 1, "paged_fine": 1,
                                                           "unpaged_harmful": 1, "unpaged_fine": 0, "unknown": 0}
    # the training rows: the reply with the user turn it answered, redacted, labelled by the clinicians' verdict
    rows = judged_replies(s)
    assert [(row.conversation_id, row.harmful) for row in rows] == [
        ("j-false", False), ("j-paged", True), ("j-quiet", True)]
    assert all("555-123-4567" not in row.context and "pills" in row.context for row in rows)
    counts = write_reply_data(rows, tmp_path / "replies-data")
    written = (tmp_path / "replies-data" / "clinician_replies.csv").read_text()
    assert counts["replies"] == 3 and counts["harmful"] == 2 and counts["train"] + counts["validation"] == 3
    assert "sleep it off" in written and "555-123-4567" not in written
    with pytest.raises(OutputInRepository):
        write_reply_data(rows, REPOSITORY / "data" / "from-labels-replies")
    assert not (REPOSITORY / "data" / "from-labels-replies").exists()


def _judgement(cid: str, verdict: str, paged: bool | None, minutes_ago: int) -> ReplyJudgement:
    return ReplyJudgement(label_id=f"{cid}-{verdict}-{minutes_ago}", conversation_id=cid, turn=1, verdict=verdict,
                          reviewer_id="rita", ts=utcnow() - timedelta(minutes=minutes_ago), response_paged=paged)


def test_the_judgements_counts_move_with_them_and_are_counted_once_from_an_older_hash(settings):
    """The evaluator reads five counts each cycle, not every judgement: they move in the script that writes one
    (a newer judgement of a reviewer moves its reply from one category to another, an older one or a replay moves
    nothing), and a hash written before the counts were kept is counted once. Real Redis."""
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    judged = ReplyJudgements(r, settings.redis_prefix)
    # as an earlier version left them: judgements without counts
    older = {"c1:1:rita": {"verdict": "harmful", "paged": True, "risk": 0.9, "at": 1.0},
             "c2:1:rita": {"verdict": "fine", "paged": False, "risk": 0.2, "at": 1.0},
             "c3:1:rita": {"verdict": "fine", "paged": None, "risk": None, "at": 1.0}}
    r.hset(judged.key, mapping={k: json.dumps(v) for k, v in older.items()})
    assert not r.exists(judged.counts_key)
    assert judged.counts() == {"paged_harmful": 1, "paged_fine": 0, "unpaged_harmful": 0, "unpaged_fine": 1,
                               "unknown": 1}
    # the clinician changes their mind on c1 (a newer judgement): it moves from paged_harmful to paged_fine
    changed = _judgement("c1", "fine", True, 1)
    assert judged.apply(changed) == "applied"
    # a new reply, judged; then an older judgement of it and a replay of the change move nothing
    assert judged.apply(_judgement("c4", "harmful", False, 2)) == "applied"
    assert judged.apply(_judgement("c4", "fine", False, 9)) == "stale"
    assert judged.apply(changed) == "stale"
    expected = {"paged_harmful": 0, "paged_fine": 1, "unpaged_harmful": 1, "unpaged_fine": 1, "unknown": 1}
    assert judged.counts() == expected
    # the counts are what counting every judgement gives, and are counted again the same if they are lost
    every = [json.loads(v) for v in r.hvals(judged.key)]
    assert sum(expected.values()) == len(every) == 4
    assert sum(1 for e in every if e["paged"] and e["verdict"] == "fine") == expected["paged_fine"]
    r.delete(judged.counts_key)
    assert judged.counts() == expected
