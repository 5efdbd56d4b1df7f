"""Handlers of `vigil train` and `vigil model eval|export`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.settings import Settings

__all__ = ["train_command", "eval_command", "export_command", "calibrate_command"]


def train_command(args: argparse.Namespace, settings: Settings) -> int:
    """Train a model directory from a CSV."""
    from models.train import TrainConfig, train

    cfg = TrainConfig(
        fine_tune=args.fine_tune, layers=args.layers, epochs=args.epochs, seed=args.seed,
        target_recall=args.target_recall, threads=settings.torch_threads, chat_sentences=args.chat_sentences,
        class_column=args.class_column, max_length=args.max_length, extra_train=list(args.extra_train),
        extra_repeat=args.extra_repeat, keep_epoch=args.keep_epoch,
    )
    meta = train(Path(args.data), Path(args.out), cfg, split_file=Path(args.split_file) if args.split_file else None,
                 cache_dir=settings.cache_dir)
    print(json.dumps({"out": str(args.out), "model_version": meta["model_version"],
                      "threshold": meta["threshold"], "metrics": meta["metrics"][meta["eval_split"]]}))
    return 0


def eval_command(args: argparse.Namespace, settings: Settings) -> int:
    """Score a labelled CSV and print the metrics at the model's threshold."""
    from models.classifier import CrisisClassifier
    from models.report import classification_report, group_max
    from models.train import load_dataset

    data = load_dataset(Path(args.data))
    rows = np.arange(len(data.ids))
    if args.split_file:
        with open(args.split_file, newline="", encoding="utf-8") as fh:
            split = {r["id"]: r["split"] for r in csv.DictReader(fh)}
        rows = np.asarray([i for i, row_id in enumerate(data.ids) if split.get(row_id) == args.split])
    clf = CrisisClassifier.load(
        Path(args.model_dir) if args.model_dir else settings.model_dir, backend=args.backend or settings.model_backend,
        threads=settings.torch_threads, batch_size=settings.batch_size, threshold=settings.threshold,
        cache_dir=settings.cache_dir,
    )
    scores = clf.predict([data.texts[i] for i in rows])
    labels = data.labels[rows]
    if args.group_column:
        csv.field_size_limit(10**8)
        with open(args.data, newline="", encoding="utf-8") as fh:
            groups_all = [r[args.group_column] for r in csv.DictReader(fh)]
        scores, labels = group_max(np.asarray(groups_all)[rows], scores, labels)
    report = classification_report(scores, labels, clf.threshold)
    report["model_version"] = clf.model_version
    report["backend"] = clf.backend.name
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def export_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build the int8 ONNX graph of a model into the cache (done at first use otherwise)."""
    from models.classifier import CrisisClassifier

    clf = CrisisClassifier.load(settings.model_dir, backend="onnx", cache_dir=settings.cache_dir)
    print(f"{clf.model_version}: {getattr(clf.backend, 'path', '')}", file=sys.stderr)
    return 0


def calibrate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Re-calibrate a trained model directory and choose its threshold again, without retraining."""
    from models.classifier import ARTIFACT_FILE
    from models.train import TrainConfig, calibrate, load_dataset, split_rows

    out = Path(args.model_dir)
    meta = json.loads((out / ARTIFACT_FILE).read_text())
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
