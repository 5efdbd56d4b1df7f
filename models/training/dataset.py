"""Labelled rows for training and evaluation: reading the CSVs, source classes, and the fixed
train/validation/test split (by author when the split file gives one).
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil_core.errors import VigilError

__all__ = ["Dataset", "load_dataset", "attach_classes", "split_rows", "rows_by_id", "Progress", "stderr_progress"]


Progress = Callable[[str], None]


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)




@dataclass
class Dataset:
    """Rows of `id,text,label` with label 1 for crisis."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    sha256: str
    path: Path
    classes: np.ndarray | None = None  # optional source class per row (e.g. subreddit), for a multi-class head
    n_primary: int | None = None  # rows read from `path`; rows after them were added for training only

    @property
    def primary_rows(self) -> int:
        return len(self.ids) if self.n_primary is None else self.n_primary

    def with_rows(
        self, ids: list[str], texts: list[str], labels: np.ndarray, classes: np.ndarray | None
    ) -> tuple[Dataset, np.ndarray]:
        """This data with rows appended for training (classes kept when this data has them) and their indices."""
        out = Dataset(self.ids + ids, self.texts + texts, np.concatenate([self.labels, labels]), self.sha256,
                      self.path, np.concatenate([self.classes, classes]) if self.classes is not None else None,
                      self.primary_rows)
        return out, np.arange(len(self.ids), len(out.ids))

    def class_names(self) -> tuple[list[str], list[str]]:
        """All source classes (sorted) and those that are crisis classes; every class must be one or the other."""
        if self.classes is None:
            return [], []
        names = sorted(set(self.classes.tolist()))
        crisis = sorted(set(self.classes[self.labels].tolist()))
        mixed = sorted(set(crisis) & set(self.classes[~self.labels].tolist()))
        if mixed:
            raise VigilError(f"class {mixed[0]!r} holds both crisis and no_crisis rows; a class must be one or "
                             "the other")
        if not crisis or len(crisis) == len(names):
            raise VigilError("the class column needs both crisis and no_crisis classes")
        return names, crisis


def load_dataset(path: Path) -> Dataset:
    """Read a CSV of `id,text,label` (`crisis` / `no_crisis`)."""
    raw = Path(path).read_bytes()
    csv.field_size_limit(10**8)
    reader = csv.DictReader(raw.decode("utf-8").splitlines(keepends=True))
    missing = {"id", "text", "label"} - set(reader.fieldnames or [])
    if missing:
        raise VigilError(f"{path}: missing columns {sorted(missing)}")
    ids, texts, labels = [], [], []
    for n, row in enumerate(reader, start=2):
        label = row["label"].strip().lower()
        if label not in {"crisis", "no_crisis"}:
            raise VigilError(f"{path}:{n}: label must be crisis or no_crisis, got {label!r}")
        ids.append(row["id"])
        texts.append(row["text"] or "")
        labels.append(label == "crisis")
    return Dataset(ids, texts, np.asarray(labels, dtype=bool), hashlib.sha256(raw).hexdigest(), Path(path))


def rows_by_id(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A CSV's column names and its rows keyed by their `id`."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), {r["id"]: r for r in reader}


def attach_classes(data: Dataset, column: str, split_file: Path | None = None) -> Dataset:
    """The source class of every row from `column` of the data CSV, or else of the split file."""
    for source in (data.path, split_file):
        if source is None:
            continue
        columns, rows = rows_by_id(source)
        if column not in columns:
            continue
        values = {i: (r[column] or "").strip() for i, r in rows.items()}
        missing = [i for i in data.ids if not values.get(i)]
        if missing:
            raise VigilError(f"{source}: no {column!r} for {len(missing)} ids, e.g. {missing[0]}")
        data.classes = np.asarray([values[i] for i in data.ids])
        data.class_names()  # validate
        return data
    raise VigilError(f"column {column!r} is neither in {data.path} nor in the split file")


def _read_split_file(path: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    columns, rows = rows_by_id(path)
    missing = [i for i in ids if i not in rows]
    if missing:
        raise VigilError(f"{path}: no split for {len(missing)} ids, e.g. {missing[0]}")
    splits = np.asarray([rows[i]["split"] for i in ids])
    group_col = next((c for c in ("author_hash", "group") if c in columns), None)
    groups = np.asarray([rows[i][group_col] for i in ids]) if group_col else None
    return splits, groups


def split_rows(
    data: Dataset, seed: int, split_file: Path | None = None, val_fraction: float = 1 / 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test row indices.

    With a split file (`id,split[,author_hash]`), its `test` rows are the test set (used only for the
    final report) and validation is a group-wise share of its `train` rows, so no author is in both.
    Without one, a seeded stratified 70/15/15 split.
    """
    rng = np.random.default_rng(seed)
    if split_file is not None:
        splits, groups = _read_split_file(split_file, data.ids)
        test = np.flatnonzero(splits == "test")
        pool = np.flatnonzero(splits == "train")
        keys = groups[pool] if groups is not None else np.asarray(data.ids)[pool]
        uniq = np.unique(keys)
        val_keys = set(rng.choice(uniq, size=max(1, int(len(uniq) * val_fraction)), replace=False).tolist())
        in_val = np.asarray([k in val_keys for k in keys])
        return pool[~in_val], pool[in_val], test
    train_idx, val_idx, test_idx = [], [], []
    for cls in (True, False):
        rows = rng.permutation(np.flatnonzero(data.labels == cls))
        a, b = int(len(rows) * 0.70), int(len(rows) * 0.85)
        train_idx += rows[:a].tolist()
        val_idx += rows[a:b].tolist()
        test_idx += rows[b:].tolist()
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)
