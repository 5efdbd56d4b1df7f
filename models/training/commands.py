"""Handlers of `vigil train` and `vigil model eval|export`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vigil_core.settings import Settings

__all__ = ["train_command", "eval_command", "export_command", "calibrate_command"]


def train_command(args: argparse.Namespace, settings: Settings) -> int:
    """Train a model directory from a CSV."""
    if args.init_from or args.chat_data:
        return _chat_train_command(args, settings)
    from models.training.train import TrainConfig, train

    cfg = TrainConfig(
        fine_tune=args.fine_tune, layers=args.layers, epochs=args.epochs, seed=args.seed,
        target_recall=args.target_recall, threads=settings.torch_threads, chat_sentences=args.chat_sentences,
        class_column=args.class_column, max_length=args.max_length, extra_train=list(args.extra_train),
        extra_repeat=args.extra_repeat, keep_epoch=args.keep_epoch,
        encoder_layers=args.encoder_layers,
    )
    meta = train(Path(args.data), Path(args.out), cfg, split_file=Path(args.split_file) if args.split_file else None,
                 cache_dir=settings.cache_dir)
    print(json.dumps({"out": str(args.out), "model_version": meta["model_version"],
                      "threshold": meta["threshold"], "metrics": meta["metrics"][meta["eval_split"]]}))
    return 0


def _chat_config(args: argparse.Namespace, settings: Settings) -> Any:
    from models.training.train_config import ChatTrainConfig

    # the options given on the command line; the others keep ChatTrainConfig's defaults
    given = {"chat_recall": getattr(args, "chat_recall", None),
             "posts_weight": getattr(args, "chat_posts_weight", None), "heads": getattr(args, "chat_heads", None),
             "char_weight": getattr(args, "chat_char", None)}
    return ChatTrainConfig(threads=settings.torch_threads, kinds=bool(getattr(args, "chat_kinds", False)),
                           chitchat=bool(getattr(args, "chat_chitchat", False)),
                           **{k: v for k, v in given.items() if v is not None})


def _chat_train_command(args: argparse.Namespace, settings: Settings) -> int:
    from models.artifact import default_cache_dir
    from models.training.chat_train import train_chat_head
    from models.training.dataset import stderr_progress as _stderr

    if not (args.init_from and args.chat_data and args.split_file and args.class_column):
        raise SystemExit("vigil train: --init-from and --chat-data go together, with --split-file and --class-column")
    meta = train_chat_head(Path(args.init_from), Path(args.data), Path(args.split_file), args.class_column,
                           Path(args.chat_data), Path(args.out), _chat_config(args, settings),
                           _stderr, cache_dir=settings.cache_dir or default_cache_dir())
    served = "onnx" if meta["onnx_recall_ok"] else "torch"
    print(json.dumps({"out": str(args.out), "model_version": meta["model_version"], "threshold": meta["threshold"],
                      "chat_test": meta["metrics"][served]["chat_test"],
                      "posts_test": meta["metrics"][served]["posts_test"]}))
    return 0


def eval_command(args: argparse.Namespace, settings: Settings) -> int:
    """Score a labelled CSV and print the metrics at the model's threshold.

    With `--group-column` the rows are conversations' user turns: each is scored as the scorer scores it (with
    the earlier turns of its conversation as context), a conversation is flagged when any turn is, and
    `flag_rate` is the share of no_crisis conversations flagged. With `--by-column` the same metrics are given
    per value of that column (`by`). With `--phrases` a turn is flagged as the scorer flags it: also when it holds a
    phrase of imminent risk or an explicit phrase, whatever the model scored (it then counts at the threshold).
    """
    from models.classifier import CrisisClassifier
    from models.training.chat_data import load_chat, turn_scores
    from models.training.report import classification_report, flag_rate, group_max

    data = load_chat(Path(args.data))
    rows = np.arange(len(data.ids))
    if args.split_file:
        with open(args.split_file, newline="", encoding="utf-8") as fh:
            split = {r["id"]: r["split"] for r in csv.DictReader(fh)}
        rows = np.asarray([i for i, row_id in enumerate(data.ids) if split.get(row_id) == args.split], dtype=int)
    columns = _columns(Path(args.data), [c for c in (args.group_column, args.by_column) if c])
    if args.group_column:
        data.conversation = np.asarray(columns[args.group_column])
    data = data.subset(rows)
    by = np.asarray(columns[args.by_column])[rows] if args.by_column else None
    clf = CrisisClassifier.load(
        Path(args.model_dir) if args.model_dir else settings.model_dir, backend=args.backend or settings.model_backend,
        threads=settings.torch_threads, batch_size=settings.batch_size, threshold=settings.threshold,
        cache_dir=settings.cache_dir,
    )
    if args.group_column:
        scores, _ = turn_scores(clf, data, progress=not args.json)
    else:
        scores = clf.predict(data.texts)
    phrases = bool(getattr(args, "phrases", False))
    if phrases:
        # as the scorer flags: a turn holding a phrase of imminent risk or an explicit one (the lexicon's strong tier)
        # whatever the model scored (pipeline/turn_rules.py); such a turn counts at the threshold
        from models.backup import ScorerPhrases

        scores = np.where(ScorerPhrases().flags(data.texts), np.maximum(scores, clf.threshold), scores)

    def report_of(keep: np.ndarray) -> dict[str, Any]:
        s, y = scores[keep], data.labels[keep]
        if args.group_column:
            s, y = group_max(data.conversation[keep], s, y)
        if not len(y):
            return {"n": 0}
        report = classification_report(s, y, clf.threshold)
        if len(y):
            flag = flag_rate(s, y, clf.threshold)
            report["flag_rate"], report["flag_rate_ci"] = flag
        return report

    everything = np.ones(len(data), dtype=bool)
    report = report_of(everything)
    if by is not None:
        report["by"] = {str(v): report_of(by == v) for v in sorted(set(by.tolist()))}
    report["model_version"] = clf.model_version
    report["backend"] = clf.backend.name
    report["phrases"] = phrases
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def _columns(path: Path, names: list[str]) -> dict[str, list[str]]:
    if not names:
        return {}
    csv.field_size_limit(10**8)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [n for n in names if n not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: no column {missing[0]!r}")
        rows = list(reader)
    return {n: [r[n] for r in rows] for n in names}


def _chat_calibrate_command(args: argparse.Namespace, settings: Settings, out: Path, meta: dict[str, Any]) -> int:
    """A chat model: its threshold chosen again for `--chat-recall`, then the posts head's tiers at that threshold
    (`chat_calibrate`, as `vigil train --chat-data` ends); the head and its context choice stay as fitted."""
    from models.training.card_recipe import fitted_config
    from models.training.chat_calibrate import chat_calibrate
    from models.training.chat_train import chat_training_data
    from models.training.dataset import stderr_progress
    from models.training.train_config import ChatTrainConfig

    if not (args.chat_data and args.split_file):
        raise SystemExit("vigil model calibrate: a chat model needs --chat-data and --split-file")
    cfg = ChatTrainConfig.fitted_like(meta.get("chat_config"), threads=settings.torch_threads,
                                      **({"chat_recall": args.chat_recall} if args.chat_recall is not None else {}))
    posts, splits, chat = chat_training_data(Path(args.data), Path(args.split_file), meta["class_column"],
                                             Path(args.chat_data), cfg)
    # The card's recipe names the fit's own recall target (the context was chosen at it), then this command.
    meta["recalibrated"] = {"fitted_chat_recall": fitted_config(meta)["chat_recall"], "chat_recall": cfg.chat_recall}
    if args.note:
        meta["operating_point_note"] = args.note
    if getattr(args, "idioms", False):
        from models.idioms import IDIOMS_VERSION

        meta["idioms"] = IDIOMS_VERSION
    meta = chat_calibrate(out, meta, posts, splits, chat, cfg, stderr_progress, settings.cache_dir)
    served = "onnx" if meta["onnx_recall_ok"] else "torch"
    print(json.dumps({"model_version": meta["model_version"], "threshold": meta["threshold"],
                      "chat_test": meta["metrics"][served]["chat_test"],
                      "posts_test": meta["metrics"][served]["posts_test"]}))
    return 0


def export_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build the int8 ONNX graph of a model into the cache (done at first use otherwise)."""
    from models.classifier import CrisisClassifier

    clf = CrisisClassifier.load(settings.model_dir, backend="onnx", cache_dir=settings.cache_dir)
    backend = clf.backend
    print(f"{clf.model_version}: {getattr(backend, 'path', '')} (int8 weights {getattr(backend, 'weights', '-')})",
          file=sys.stderr)
    return 0


def calibrate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Re-calibrate a trained model directory and choose its threshold again, without retraining."""
    from models.artifact import ARTIFACT_FILE
    from models.training.dataset import load_dataset, split_rows
    from models.training.operating_point import calibrate
    from models.training.train_config import TrainConfig

    out = Path(args.model_dir)
    meta = json.loads((out / ARTIFACT_FILE).read_text())
    if "chat_head" in meta:
        return _chat_calibrate_command(args, settings, out, meta)
    if getattr(args, "idioms", False):
        raise SystemExit("vigil model calibrate --idioms: only a chat model (`vigil train --chat-data`) reads idioms")
    known = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in meta.get("config", {}).items() if k in known})
    cfg.target_recall = args.target_recall
    if args.note:
        meta["operating_point_note"] = args.note
    data = load_dataset(Path(args.data))
    split_file = Path(args.split_file) if args.split_file else None
    meta = calibrate(out, data, split_rows(data, cfg.seed, split_file), cfg, split_file, meta,
                     cache_dir=settings.cache_dir)
    print(json.dumps({"model_version": meta["model_version"], "threshold": meta["threshold"],
                      "metrics": meta["metrics"][meta["eval_split"]]}))
    return 0
