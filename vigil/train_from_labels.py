"""`vigil train --from-labels`: the clinicians' labelled conversations as chat-form training data, and a model.

The only clinician-labelled chat Vigil will ever have is what its reviewers label. This reads every review request
(`safety.review`: a conversation's turns) and every signed label of an enabled account (`clinician.labels`), and
makes one row per user turn of each labelled conversation: crisis when the conversation's level is moderate or
above and the turn is at or after its first crisis turn (every user turn when the clinicians named none), else
no_crisis. A conversation's level is read as the evaluator reads it: a clinical lead's adjudication, else the most
severe level a reviewer gave; its first crisis turn the earliest any reviewer named.

**Identifiers are redacted before any text is written to disk** (review.redaction: phone numbers, e-mail
addresses, URLs, handles, names after "my name is"), and the output directory must lie outside the repository
(the text is health data, and a repository is copied, pushed and shared).

The rows join the chat-form data the shipped model was trained on (`--chat-data`, default data/chat_form): a
hash-chosen quarter of the labelled conversations goes to validation (where the threshold is chosen), the rest to
training; the team's test split is left as it is, so the card's test row stays comparable between versions (the
kinds set and the small talk beside them are copied as they are). Then the chat head is fitted as `vigil train
--init-from` fits it, with the options the initial model's own head was fitted with (its `chat_config`), and the
model directory (with its card) is ready for `vigil model register` and `vigil model shadow`.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.window import LabelledConversation
from kafka_io import read_all
from pipeline.sampling import uniform_from_id
from review.redaction import redact
from vigil_core.contracts import ClinicianLabel, ReviewRequest, parse_event
from vigil_core.errors import ContractError, VigilError
from vigil_core.label_signing import LabelSigner, account_enabled
from vigil_core.redis_client import connect
from vigil_core.settings import Settings

__all__ = ["labelled_turns", "write_training_data", "from_labels_command", "REPOSITORY", "LabelledTurn", "split_of",
           "write_source"]

REPOSITORY = Path(__file__).resolve().parents[1]
VALIDATION_SHARE = 0.25
SOURCE = "clinician_labels"
FIELDS = ["id", "text", "label", "conversation", "turn", "source", "category", "alone"]


class OutputInRepository(VigilError):
    """Training data from labels is health data: it is never written inside the repository."""


@dataclass(frozen=True, slots=True)
class LabelledTurn:
    """One user turn of a labelled conversation, its text already redacted."""

    conversation_id: str
    turn: int
    text: str
    crisis: bool
    level: str


def _resolve(cid: str, labels: list[ClinicianLabel]) -> tuple[LabelledConversation, int | None]:
    """The conversation as the evaluator reads its labels (each reviewer's latest; a lead's adjudication decides),
    and its first crisis turn (module docstring)."""
    latest: dict[str, ClinicianLabel] = {}
    for label in sorted(labels, key=lambda lab: lab.ts):
        latest[label.reviewer_id] = label
    decisions = sorted((lab.ts, lab.level) for lab in labels if lab.adjudication)
    conversation = LabelledConversation(cid, 0.0, {r: lab.level for r, lab in latest.items()}, flagged=False,
                                        pi=1.0, adjudicated=decisions[-1][1] if decisions else None)
    turns = [lab.first_crisis_turn for lab in latest.values() if lab.first_crisis_turn is not None]
    return conversation, (min(turns) if turns else None)


def labelled_turns(settings: Settings) -> list[LabelledTurn]:
    """Every user turn of every labelled conversation that has a review request, redacted."""
    client = connect(settings.redis_url.get_secret_value())
    signer = LabelSigner.from_settings(settings)
    labels: dict[str, list[ClinicianLabel]] = {}
    for rec in read_all(settings, settings.topic_labels, timeout_s=60.0):
        try:
            label = parse_event(rec.value, accept=frozenset({"clinician.label/1"}))
        except ContractError:
            continue  # dead-lettered by the evaluator
        assert isinstance(label, ClinicianLabel)
        if signer.refusal(label) or not account_enabled(client, settings.redis_prefix, label.reviewer_id):
            continue  # unsigned, forged, or from a disabled account: the evaluator never counted it either
        labels.setdefault(label.conversation_id, []).append(label)
    turns: dict[str, dict[int, str]] = {}
    for rec in read_all(settings, settings.topic_review, timeout_s=60.0):
        try:
            request = parse_event(rec.value, accept=frozenset({"safety.review_request/1"}))
        except ContractError:
            continue
        assert isinstance(request, ReviewRequest)
        if request.conversation_id in labels:  # a later request of a conversation holds at least its turns
            turns.setdefault(request.conversation_id, {}).update(
                {t.turn: t.text for t in request.turns if t.role == "user"})
    out = []
    for cid in sorted(set(labels) & set(turns)):
        conversation, first = _resolve(cid, labels[cid])
        crisis, level = conversation.crisis, conversation.level
        for turn in sorted(turns[cid]):
            is_crisis = crisis and (first is None or turn >= first)
            out.append(LabelledTurn(cid, turn, redact(turns[cid][turn]), is_crisis, level))
    return out


def _outside_repository(path: Path) -> Path:
    resolved = path.resolve()
    if resolved == REPOSITORY or REPOSITORY in resolved.parents:
        raise OutputInRepository(f"{path} is inside the repository ({REPOSITORY}); training data from clinicians' "
                                 "labels is health data: write it outside (e.g. /var/lib/vigil/train)")
    return resolved


def write_training_data(rows: list[LabelledTurn], base_chat: Path, out: Path) -> dict[str, Any]:
    """The chat-form folder (chat_train/validation/test.csv) of `base_chat` with the labelled turns added
    (module docstring); returns counts."""
    out = _outside_repository(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "validation": 0, "conversations": len({r.conversation_id for r in rows}),
              "crisis_turns": sum(r.crisis for r in rows)}
    for split in ("train", "validation", "test"):
        shutil.copyfile(base_chat / f"chat_{split}.csv", out / f"chat_{split}.csv")
    # the kinds set and the small talk, where the base has them: a model fitted on them is fitted on them again
    for extra in sorted([*base_chat.glob("kinds_*.csv"), *base_chat.glob("chitchat_*.csv")]):
        shutil.copyfile(extra, out / extra.name)
    handles = {split: open(out / f"chat_{split}.csv", "a", newline="", encoding="utf-8")  # noqa: SIM115
               for split in ("train", "validation")}
    try:
        writers = {split: csv.DictWriter(fh, fieldnames=FIELDS) for split, fh in handles.items()}
        for r in rows:
            split = split_of(r.conversation_id)
            label = "crisis" if r.crisis else "no_crisis"
            writers[split].writerow({"id": f"lab-{r.conversation_id}-{r.turn}", "text": r.text, "label": label,
                                     "conversation": f"lab-{r.conversation_id}", "turn": r.turn, "source": SOURCE,
                                     "category": r.level, "alone": "unknown"})
            counts[split] += 1
    finally:
        for fh in handles.values():
            fh.close()
    write_source(out, "Chat-form training data with clinicians' labels",
                 f"Built by `vigil train --from-labels` from {base_chat} and {counts['conversations']} conversations "
                 f"labelled in the review app ({counts['train']} turns in chat_train.csv, {counts['validation']} in "
                 "chat_validation.csv; source `clinician_labels`).")
    return counts


def split_of(conversation_id: str) -> str:
    """A labelled conversation's split: a hash-chosen VALIDATION_SHARE goes to validation, the rest to training."""
    return "validation" if uniform_from_id(conversation_id, "vigil-from-labels-v1") < VALIDATION_SHARE else "train"


def write_source(out: Path, title: str, built: str) -> None:
    """The data folder's SOURCE.md: what it holds and how to treat it."""
    (out / "SOURCE.md").write_text(
        f"# {title}\n\n{built} Identifiers were redacted before writing. This is sensitive health data: keep it "
        "out of repositories and delete it with the model it trained.\n")


def from_labels_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build the training data from labels, fit the chat head, write the model directory with its card."""
    from models.artifact import DEFAULT_MODEL_DIR, ModelInfo, default_cache_dir
    from models.training.chat_train import train_chat_head
    from models.training.dataset import stderr_progress
    from models.training.train_config import ChatTrainConfig

    out = _outside_repository(Path(args.out))
    if not (args.split_file and args.class_column):
        raise SystemExit("vigil train --from-labels: needs --data (the posts), --split-file and --class-column")
    rows = labelled_turns(settings)
    if not rows:
        raise SystemExit("vigil train --from-labels: no labelled conversation with its turns in the topics")
    data_dir = out.parent / f"{out.name}-data"
    counts = write_training_data(rows, Path(args.chat_data or REPOSITORY / "data" / "chat_form"), data_dir)
    init_from = Path(args.init_from or DEFAULT_MODEL_DIR)
    # fitted as the initial model's head was (its kinds, small talk, recall target and posts weight), not with the
    # defaults: retrained from the shipped model, a head must not lose the data the shipped one was fitted on
    cfg = ChatTrainConfig.fitted_like(ModelInfo.read(init_from).extra.get("chat_config"),
                                      threads=settings.torch_threads)
    meta = train_chat_head(init_from, Path(args.data), Path(args.split_file), args.class_column, data_dir, out, cfg,
                           stderr_progress, cache_dir=settings.cache_dir or default_cache_dir())
    served = "onnx" if meta["onnx_recall_ok"] else "torch"
    print(json.dumps({"out": str(out), "data": str(data_dir), "labelled": counts,
                      "model_version": meta["model_version"], "threshold": meta["threshold"],
                      "chat_test": meta["metrics"][served]["chat_test"]}))
    return 0
