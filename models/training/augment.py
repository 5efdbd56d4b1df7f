"""Training rows added to the posts: short sentences of the posts (weakly labelled by the lexicon) and the
train rows of extra CSVs (team-written chat turns), with their held-out rows reported separately.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from models.classifier import CrisisClassifier
from models.training.dataset import Dataset, Progress, load_dataset, rows_by_id
from models.training.report import classification_report
from vigil_core.errors import VigilError

__all__ = ["LEXICON_SURE", "add_chat_sentences", "add_extra_rows", "extra_heldout_reports"]


# A sentence of a crisis post is taken as a weak crisis example only when the lexicon is this sure of it:
# most sentences of a crisis post are ordinary, and a weak label that is wrong teaches the head to flag chat.
LEXICON_SURE = 0.99
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def add_chat_sentences(
    data: Dataset, train_idx: np.ndarray, limit: int, seed: int
) -> tuple[Dataset, np.ndarray, dict[str, int]]:
    """Weakly labelled chat-length examples from the training posts only (never validation or test).

    Posts are long; chat turns are short, and a model trained on posts alone scores ordinary short messages
    ("can you help me plan my week?") as high as a crisis post. So: sentences of 3 to 40 words from
    no_crisis posts with no lexicon hit become no_crisis examples, and sentences from crisis posts with a
    strong hit of the clinician-validated Suicide Risk Lexicon become crisis examples.
    """
    from models.backup import TRAINING_DATA_FILES, BackupScorer

    lexicon = BackupScorer(0.5, files=TRAINING_DATA_FILES)
    rng = np.random.default_rng(seed)
    neg: list[tuple[str, int]] = []
    pos: list[tuple[str, int]] = []
    for i in train_idx:
        for sent in _SENTENCE.split(data.texts[i]):
            words = sent.split()
            if not 3 <= len(words) <= 40:
                continue
            score = lexicon.predict([sent])[0]
            if data.labels[i] and score >= LEXICON_SURE:
                pos.append((sent.strip(), int(i)))
            elif not data.labels[i] and score < 0.5:
                neg.append((sent.strip(), int(i)))
    neg_keep = [neg[k] for k in rng.permutation(len(neg))[: max(0, limit - len(pos))]]
    sources = [i for _, i in pos + neg_keep]
    out, extra = data.with_rows(
        [f"chat-pos-{k}" for k in range(len(pos))] + [f"chat-neg-{k}" for k in range(len(neg_keep))],
        [t for t, _ in pos + neg_keep],
        np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg_keep), bool)]),
        data.classes[sources] if data.classes is not None else None,  # a sentence keeps its post's class
    )
    return out, np.concatenate([train_idx, extra]), {"crisis_sentences": len(pos), "no_crisis_sentences": len(neg_keep)}


def _read_extra(path: Path) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """A labelled CSV, each row's split (`train` for all without a `split` column) and head class."""
    extra = load_dataset(path)
    columns, by_id = rows_by_id(path)
    split = np.asarray([by_id[i]["split"] if "split" in columns else "train" for i in extra.ids])
    default = np.where(extra.labels, "extra_crisis", "extra_no_crisis")
    classes = np.asarray([(by_id[i].get("class") or "").strip() or default[k] for k, i in enumerate(extra.ids)])
    return extra, split, classes


def add_extra_rows(
    data: Dataset, train_idx: np.ndarray, paths: list[str], repeat: int = 1
) -> tuple[Dataset, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Rows of other labelled CSVs (`id,text,label[,class][,split]`) for training and model selection only.

    For chat-length examples the primary data lacks (see data/chat_contrast). Its `train` rows (all rows without
    a `split` column) join training, each `repeat` times per epoch; its `validation` rows join the rows on which
    an epoch (or a head's regularisation) is selected; its `test` rows are only reported (`extra_heldout_reports`).
    The calibration, the operating threshold and the reported validation metrics stay on the primary data. With a
    multi-class head an added row's class is its `class` column (else `extra_crisis` / `extra_no_crisis`).
    Returns the data, the training rows, the added selection rows and what was added from each file.
    """
    if repeat < 1:
        raise VigilError(f"extra_repeat must be at least 1, got {repeat}")
    added: list[dict[str, Any]] = []
    new_train: list[np.ndarray] = []
    new_select: list[np.ndarray] = []
    for path in paths:
        extra, split, extra_classes = _read_extra(Path(path))
        rows_train, rows_select = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
        keep = np.concatenate([rows_train, rows_select])
        clash = sorted(set(extra.ids[k] for k in keep) & set(data.ids))
        if clash:
            raise VigilError(f"{path}: id {clash[0]!r} is already a training row")
        data, rows = data.with_rows([extra.ids[k] for k in keep], [extra.texts[k] for k in keep], extra.labels[keep],
                                    extra_classes[keep])
        new_train.append(rows[: len(rows_train)])
        new_select.append(rows[len(rows_train):])
        added.append({"path": Path(path).name, "sha256": extra.sha256, "rows": len(rows_train),
                      "crisis": int(extra.labels[rows_train].sum()), "selection_rows": len(rows_select),
                      "selection_crisis": int(extra.labels[rows_select].sum()), "repeat": repeat})
    train_rows = np.concatenate([train_idx, *new_train * repeat])
    return data, train_rows, np.concatenate([np.zeros(0, dtype=int), *new_select]), added


def extra_heldout_reports(
    clf: CrisisClassifier, paths: list[str], threshold: float, progress: Progress
) -> dict[str, dict[str, Any]]:
    """Metrics on the `test` rows of each added CSV that has both labels there (never trained on or chosen by)."""
    reports: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        if not path.exists():
            progress(f"{path} is not here: its held-out rows are not reported")
            continue
        extra, split, _ = _read_extra(path)
        keep = np.flatnonzero(split == "test")
        if len(set(extra.labels[keep].tolist())) < 2:
            continue
        progress(f"scoring {len(keep)} held-out rows of {path.name}")
        report = classification_report(clf.predict([extra.texts[k] for k in keep]), extra.labels[keep], threshold)
        reports[path.name] = {**report, "sha256": extra.sha256}
    return reports
