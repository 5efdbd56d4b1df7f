"""Chat-form conversations for training and measuring: the rows, their embeddings, each turn's score as the scorer
gives it, and conversation-level reports."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.classifier import CrisisClassifier
from models.errors import ModelError
from models.head import (
    aggregate,
    context_embedding,
)
from models.normalise import NORMALISER_VERSION, normalise
from models.training.report import classification_report, flag_rate, group_max

__all__ = ["ChatRows", "load_chat", "split_files", "CHAT_SPLITS", "CHITCHAT", "Progress", "cached_embed",
           "context_matrix", "score_conversations", "conversation_report", "turn_scores"]


Progress = Callable[[str], None]
CHAT_SPLITS = ("train", "validation", "test")
CHITCHAT = "chitchat"  # the chit-chat splits' source (small talk between people: data/chat_form/chitchat.py)


@dataclass
class ChatRows:
    """User turns of chat-form conversations (`id,text,label,conversation,turn,source,category,alone`).

    `label` is the turn's label read in its conversation (a build-up turn can be a crisis only in context);
    `alone` is its label read alone (`crisis`, `no_crisis`, or `unknown`).
    """

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    conversation: np.ndarray
    turn: np.ndarray
    source: np.ndarray
    alone: np.ndarray
    sha256: str
    path: Path
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # each file read: path, sha256, turns

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> ChatRows:
        """These rows only, in this order."""
        rows = np.asarray(rows, dtype=np.int64)
        return ChatRows([self.ids[i] for i in rows], [self.texts[i] for i in rows], self.labels[rows],
                        self.conversation[rows], self.turn[rows], self.source[rows], self.alone[rows], self.sha256,
                        self.path, files=self.files)

    def windows(self, k: int) -> list[list[int]]:
        """For every row, the rows of its context: the last `k` user turns of its conversation up to it."""
        order = np.lexsort((self.turn, self.conversation))
        out: list[list[int]] = [[] for _ in range(len(self))]
        recent: list[int] = []
        previous = None
        for i in order:
            if self.conversation[i] != previous:
                recent, previous = [], self.conversation[i]
            recent = (recent + [int(i)])[-k:]
            out[i] = list(recent)
        return out


def split_files(chat_dir: Path, split: str, kinds: bool = False, chitchat: bool = False) -> list[Path]:
    """The files a chat head is fitted or chosen on for one split of a chat-form folder: `chat_{split}.csv`, and with
    `kinds`, for training and validation, where the folder has them, the kinds set's (`kinds_{split}.csv`, issue 31)
    and its added training turns (`kinds_more_{split}.csv`); with `chitchat`, the chit-chat split
    (`chitchat_{split}.csv`, small talk between people). The test split is `chat_test.csv` alone, the card's
    chat-form row; the kinds' and the chit-chat test splits are measured with it by `models.training.kinds`."""
    if split == "test":
        return [Path(chat_dir) / f"chat_{split}.csv"]
    more = [Path(chat_dir) / f"kinds_{split}.csv", Path(chat_dir) / f"kinds_more_{split}.csv"] if kinds else []
    more += [Path(chat_dir) / f"chitchat_{split}.csv"] if chitchat else []
    return [Path(chat_dir) / f"chat_{split}.csv", *[p for p in more if p.is_file()]]


def load_chat(path: Path, *more: Path) -> ChatRows:
    """Read a chat-form CSV (and more of them, as one set of conversations: their conversation ids must differ);
    a CSV without conversation columns reads as one-turn conversations."""
    rows: list[dict[str, str]] = []
    files: list[dict[str, Any]] = []
    for p in (path, *more):
        raw = Path(p).read_bytes()
        reader = csv.DictReader(raw.decode("utf-8").splitlines(keepends=True))
        part = list(reader)
        missing = {"id", "text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ModelError(f"{p}: missing columns {sorted(missing)}")
        rows += part
        files.append({"path": Path(p).name, "sha256": hashlib.sha256(raw).hexdigest(), "turns": len(part)})
    labels = np.asarray([r["label"].strip().lower() == "crisis" for r in rows], dtype=bool)
    digest = files[0]["sha256"] if not more else hashlib.sha256(
        "".join(f["sha256"] for f in files).encode()).hexdigest()
    return ChatRows(
        ids=[r["id"] for r in rows], texts=[r["text"] or "" for r in rows], labels=labels,
        conversation=np.asarray([r.get("conversation") or r["id"] for r in rows]),
        turn=np.asarray([int(r.get("turn") or 0) for r in rows], dtype=np.int64),
        source=np.asarray([r.get("source") or "" for r in rows]),
        alone=np.asarray([r.get("alone") or r["label"] for r in rows]),
        sha256=digest, path=Path(path), files=files,
    )


def embed_texts(module: Any, tokenizer: Any, texts: Sequence[str], max_length: int, progress: Progress) -> np.ndarray:
    """Pooled embeddings of texts (their first window), in length-sorted batches, at float16 as served."""
    import torch

    ids = tokenizer([normalise(t) for t in texts], truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(texts), module.head.in_features), dtype=np.float32)
    started = time.monotonic()
    with torch.inference_mode():
        b = 0
        while b < len(order):
            longest = len(ids[order[min(len(order), b + 1) - 1]])
            size = max(8, min(128, 4096 // max(1, longest)))
            idx = order[b:b + size]
            width = max(len(ids[i]) for i in idx)
            batch = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for row, i in enumerate(idx):
                batch[row, : len(ids[i])] = torch.as_tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            out[idx] = module.embed(batch, mask).numpy()
            b += len(idx)
            if b // size % 100 == 0:
                progress(f"  embedded {b}/{len(order)} texts ({time.monotonic() - started:.0f} s)")
    return out.astype(np.float16).astype(np.float32)


def cached_embed(module: Any, tokenizer: Any, texts: list[str], max_length: int, progress: Progress,
                  version: str, cache_dir: Path | None) -> np.ndarray:
    """`embed_texts`, kept in the cache folder by encoder version and texts (a second run with other head options
    does not embed again)."""
    if cache_dir is None:
        return embed_texts(module, tokenizer, texts, max_length, progress)
    key = hashlib.sha256(json.dumps([version, NORMALISER_VERSION, max_length, texts]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "chat-embeddings" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    out = embed_texts(module, tokenizer, texts, max_length, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def context_matrix(embeddings: np.ndarray, windows: list[list[int]]) -> np.ndarray:
    """Every row's context embedding (`context_embedding` of the rows of its window)."""
    return np.stack([context_embedding([embeddings[j] for j in w]) for w in windows])


def score_conversations(
    rows: ChatRows, turn_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per conversation: the highest turn score, whether any turn is a crisis, and its source."""
    scores, labels = group_max(rows.conversation, turn_scores, rows.labels)
    uniq, first = np.unique(rows.conversation, return_index=True)
    return scores, labels, rows.source[first]


def conversation_report(rows: ChatRows, turn_scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Conversation-level metrics at `threshold`, overall and per source, with the ordinary flag rate."""
    scores, labels, sources = score_conversations(rows, turn_scores)
    report = classification_report(scores, labels, threshold)
    report["flag_rate"], report["flag_rate_ci"] = flag_rate(scores, labels, threshold)
    report["n_conversations"] = int(labels.size)
    by_source = {}
    for source in sorted(set(sources.tolist())):
        keep = sources == source
        entry: dict[str, Any] = {"n": int(keep.sum()), "n_crisis": int(labels[keep].sum()),
                                 "n_ordinary": int((~labels[keep]).sum())}
        entry["flag_rate"], entry["flag_rate_ci"] = flag_rate(scores[keep], labels[keep], threshold)
        if labels[keep].any():
            sub = classification_report(scores[keep], labels[keep], threshold)
            entry.update(recall=sub["recall"], recall_ci=sub["recall_ci"], tp=sub["tp"], fn=sub["fn"])
        by_source[source] = entry
    report["by_source"] = by_source
    return report


_CHUNK = 256  # texts per classifier call when progress is shown


def turn_scores(clf: CrisisClassifier, rows: ChatRows, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every turn's score as production scores it (alone and in its conversation's context), and alone.

    The same as `CrisisClassifier.score_turns` turn by turn with each conversation's earlier turns as history
    (the scorer's path; a test checks they agree), computed in one pass over all texts."""
    logits, embeddings, letters = _embed_all(clf, rows.texts, progress)
    alone = clf.info.calibration(logits)
    if embeddings is None or not clf.uses_context:
        return alone, alone
    windows = rows.windows(clf.info.context_turns)
    # the turn's own letters count in its context too (score_turns)
    context = clf.info.calibration(clf.head(context_matrix(embeddings.astype(np.float32), windows))  # type: ignore[misc]
                                   + letters)
    return aggregate(clf.info.context_aggregate, alone, context), alone


def _embed_all(clf: CrisisClassifier, texts: list[str],
               progress: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`CrisisClassifier.embed_parts` of all texts, in chunks behind a progress bar if asked."""
    if not progress:
        return clf.embed_parts(texts)
    from rich.progress import Progress as Bar

    logits, embeddings, letters = [], [], []
    with Bar(transient=True) as bar:
        task = bar.add_task("scoring turns", total=len(texts))
        for start in range(0, len(texts), _CHUNK):
            z, e, a = clf.embed_parts(texts[start:start + _CHUNK])
            logits.append(z)
            letters.append(a)
            if e is not None:
                embeddings.append(e)
            bar.advance(task, len(texts[start:start + _CHUNK]))
    return (np.concatenate(logits) if logits else np.zeros(0),
            np.concatenate(embeddings) if embeddings else None,
            np.concatenate(letters) if letters else np.zeros(0))
