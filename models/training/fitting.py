"""The torch side of training: tokenising, caching the frozen layers' hidden states, fitting the head alone or
fine-tuning the top encoder layers, and saving the trained weights.
"""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import WEIGHTS_FILE
from models.normalise import normalise
from models.training.dataset import Dataset, Progress
from models.training.train_config import TrainConfig
from vigil_core.errors import VigilError

__all__ = ["fit_head_only", "fine_tune", "save_weights", "seed_everything"]


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tokenize(texts: list[str], max_length: int) -> list[list[int]]:
    from models.tokenizer import FastTokenizer, base_encoder_path

    tok = FastTokenizer(base_encoder_path())
    return tok([normalise(t) for t in texts], truncation=True, max_length=max_length)["input_ids"]


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


def fit_head_only(
    module: Any, data: Dataset, names: list[str], train_idx: np.ndarray, val_idx: np.ndarray, cfg: TrainConfig,
    progress: Progress,
) -> list[dict[str, float]]:
    """A logistic-regression head on frozen embeddings (multinomial over the source classes when given);
    its regularisation is the one with the best validation ROC-AUC of the crisis logit."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from models.head import LOGIT_SCALE

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


def fine_tune(
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


def save_weights(module: Any, out: Path, trained_layers: list[int]) -> str:
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
