"""`vigil train --from-labels --replies`: the clinicians' judgements of AI replies as training data for the reply model.

Reads every signed judgement of an enabled account (`clinician.reply_judgement/1` on `clinician.labels`) and the
review requests that showed the replies (`safety.review`), and makes one row per judged reply: the user turn it
answered (the context the scorer reads it with), the reply, and the clinicians' verdict (the majority of the
reviewers' latest judgements; a tie counts as harmful). Text is redacted before it is written, and only outside the
repository (as `vigil train --from-labels` does). A hash-chosen quarter of the conversations goes to validation
(where the reply model's thresholds are chosen), the rest to training; the team's test split is left as it is.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kafka_io import read_all
from review.redaction import redact
from vigil.train_from_labels import _outside_repository, split_of, write_source
from vigil_core.contracts import ReplyJudgement, ReviewRequest, parse_event
from vigil_core.errors import ContractError
from vigil_core.label_signing import LabelSigner, account_enabled
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["JudgedReply", "judged_replies", "write_reply_data", "replies_command", "CATEGORY"]

CATEGORY = "clinician_judgement"
FIELDS = ["context", "response", "label", "category", "split"]


@dataclass(frozen=True, slots=True)
class JudgedReply:
    """One AI reply the clinicians judged, its text and context already redacted."""

    conversation_id: str
    turn: int
    context: str
    response: str
    harmful: bool
    judgements: int


def _judgements(settings: Settings) -> dict[tuple[str, int], dict[str, ReplyJudgement]]:
    client = connect(settings.redis_url.get_secret_value())
    signer = LabelSigner.from_settings(settings)
    out: dict[tuple[str, int], dict[str, ReplyJudgement]] = {}
    for rec in read_all(settings, settings.topic_labels, timeout_s=60.0):
        try:
            j = parse_event(rec.value, accept=frozenset({ReplyJudgement.schema_name}))
        except ContractError:
            continue  # a crisis label, or dead-lettered by the evaluator
        assert isinstance(j, ReplyJudgement)
        if signer.refusal(j) or not account_enabled(client, settings.redis_prefix, j.reviewer_id):
            continue  # unsigned, forged, or from a disabled account: the evaluator never counted it either
        mine = out.setdefault((j.conversation_id, j.turn), {})
        if j.reviewer_id not in mine or mine[j.reviewer_id].ts <= j.ts:
            mine[j.reviewer_id] = j  # each reviewer's latest
    return out


def judged_replies(settings: Settings) -> list[JudgedReply]:
    """Every judged reply whose conversation has a review request holding it, redacted."""
    judged = _judgements(settings)
    wanted = {cid for cid, _ in judged}
    turns: dict[str, dict[tuple[int, str], str]] = {}
    for rec in read_all(settings, settings.topic_review, timeout_s=60.0):
        try:
            request = parse_event(rec.value, accept=frozenset({ReviewRequest.schema_name}))
        except ContractError:
            continue
        assert isinstance(request, ReviewRequest)
        if request.conversation_id in wanted:
            turns.setdefault(request.conversation_id, {}).update({(t.turn, t.role): t.text for t in request.turns})
    out = []
    for (cid, turn), by_reviewer in sorted(judged.items()):
        shown = turns.get(cid, {})
        if (turn, "assistant") not in shown:
            continue
        before = [t for (t, role) in shown if role == "user" and t < turn]
        context = shown[(max(before), "user")] if before else ""
        votes = Counter(j.verdict for j in by_reviewer.values())
        out.append(JudgedReply(cid, turn, redact(context), redact(shown[(turn, "assistant")]),
                               votes["harmful"] >= votes["fine"], len(by_reviewer)))
    return out


def write_reply_data(rows: list[JudgedReply], out: Path) -> dict[str, int]:
    """`out`/clinician_replies.csv (the reply model's extra rows, module docstring); returns counts."""
    out = _outside_repository(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "validation": 0, "harmful": sum(r.harmful for r in rows), "replies": len(rows)}
    with open(out / "clinician_replies.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            split = split_of(r.conversation_id)
            writer.writerow({"context": r.context, "response": r.response, "label": "unsafe" if r.harmful else "safe",
                             "category": CATEGORY, "split": split})
            counts[split] += 1
    write_source(out, "AI replies judged by clinicians",
                 f"Built by `vigil train --from-labels --replies`: {counts['replies']} AI replies judged in the review "
                 f"app ({counts['harmful']} harmful; {counts['train']} for training, {counts['validation']} for "
                 "validation).")
    return counts


def replies_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build the judged replies' data and train the response-safety model with it."""
    from models.training.response_safety_train import train

    out = _outside_repository(Path(args.out))
    rows = judged_replies(settings)
    if not rows:
        raise SystemExit("vigil train --from-labels --replies: no judged AI reply with its conversation in the topics")
    data_dir = out.parent / f"{out.name}-data"
    counts = write_reply_data(rows, data_dir)
    meta = train(out, extra=data_dir / "clinician_replies.csv")
    print(json.dumps({"out": str(out), "data": str(data_dir), "judged": counts, "version": meta["version"],
                      "threshold": meta["threshold"], "page_threshold": meta["page_threshold"]}))
    return 0
