"""The posts head's tiers of a chat model: from which window length the head trained on posts also judges a window,
and how far it is lowered, chosen on validation so the posts' recall floor holds without moving the chat threshold.
The second tier's are still named `posts_long_*` (vigil_model.json, CrisisHead.posts_long), also when it is the
shorter of the two."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.classifier import CrisisClassifier
from models.errors import ModelError
from models.head import (
    POSTS_LONG_MIN_TOKENS,
    POSTS_MIN_TOKENS,
    aggregate,
    window_logit,
    with_posts_head,
)
from models.training.chat_data import ChatRows, Progress, context_matrix, score_conversations
from models.training.thresholds import needed_for_recall
from models.training.train_config import FLAG_CEILING, POSTS_AUC_TOLERANCE, ChatTrainConfig

__all__ = ["choose_posts_head", "posts_target", "long_tier_cost"]


SHIFT_STEP = 0.05  # log-odds: the posts head's shift is chosen on a grid of this step
Window = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # what `_head_parts` gives


def _text_logits(window: Window, n_texts: int, tiers: list[tuple[int, float]], clf: CrisisClassifier) -> np.ndarray:
    """Each text's logit from its windows' head parts with the posts head's `tiers`, as the classifier serves it
    (the chat head's part with its text's letters: `CrisisHead.__call__`)."""
    chat, posts, tokens, owners = window
    served = with_posts_head(chat, posts, tokens, tiers, _flag(clf))
    return window_logit(served, owners, n_texts, clf.info.window_temperature)


def _flag(clf: CrisisClassifier) -> tuple[float, float] | None:
    return clf.head.posts_flag if clf.head is not None else None


def _posts_shift(window: Window, labels: np.ndarray, tiers: list[tuple[int, float]], min_tokens: int,
                 threshold: float, target: float, clf: CrisisClassifier) -> float | None:
    """The largest downward shift of the posts head (negative raises it) from `min_tokens`, beside the tiers already
    chosen, at which the posts' validation recall still reaches `target` at `threshold`, or None if none does."""
    chat, posts, tokens, owners = window
    base = (with_posts_head(chat, posts, tokens, tiers, _flag(clf)), posts, tokens, owners)  # the tiers chosen, once

    def meets(step: int) -> bool:
        logits = _text_logits(base, len(labels), [(min_tokens, step * SHIFT_STEP)], clf)
        return bool(np.mean(clf.info.calibration(logits)[labels] >= threshold) >= target)

    # Recall only falls as the shift grows (each step from shift to recall is monotone): bisect the grid, -30 to 60
    # log-odds, for the answer a scan up the grid would give in about 11 evaluations instead of up to 1,800.
    low, high = -600, 1200
    if not meets(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if meets(mid) else (low, mid - 1)
    return low * SHIFT_STEP


def _head_parts(clf: CrisisClassifier, texts: list[str]) -> Window:
    """Per window: the chat head's logit (its text's letters in it) and the posts head's, the window's tokens and
    its text."""
    head = clf.head
    if head is None or head.posts_head is None:
        raise ModelError("a chat model needs its posts head")
    outputs, owners, tokens = clf.window_outputs(texts)
    posts_head, head.posts_head = head.posts_head, None
    try:
        chat = head(outputs, letters=clf.letters(texts)[owners])
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

    Second tier: the same for the floor with cfg.posts_spare crisis posts to spare (`posts_target`), beside the
    first, among the lengths that also keep the posts' validation ROC-AUC within POSTS_AUC_TOLERANCE of the first
    tier's (a large raise on every long window would buy recall with ranking). Tried from the longer lengths
    (POSTS_LONG_MIN_TOKENS: long windows raised further) and from the shorter ones (POSTS_MIN_TOKENS: shorter
    windows, where the posts head must be surer, its shift found the same way): a crisis post shorter than the
    first tier is out of any longer tier's reach. Of equals, the length nearest the first tier's. None if no length
    qualifies: the first tier stands alone.
    """
    from sklearn.metrics import roc_auc_score

    parts = {n: (_head_parts(c, post_texts), _head_parts(c, va.texts), c) for n, c in backends.items()}
    windows = {n: va.windows(c.info.context_turns) for n, c in backends.items()}
    contexts = {}
    for n, c in backends.items():
        _, embeddings, letters = c.embed_parts(va.texts)
        if c.head is None or embeddings is None:
            raise ModelError("a chat model needs its numpy head")
        contexts[n] = c.head(context_matrix(embeddings.astype(np.float32), windows[n])) + letters

    def try_tier(tiers: list[tuple[int, float]], min_tokens: int, target: float) -> dict[str, Any]:
        shifts = [_posts_shift(p[0], post_labels, tiers, min_tokens, threshold, target, p[2]) for p in parts.values()]
        if any(s is None for s in shifts):
            progress(f"  posts head from {min_tokens} tokens: recall {target:.3f} on the posts cannot be met")
            return {"posts_min_tokens": min_tokens, "feasible": False}
        shift = min(s for s in shifts if s is not None)
        chosen = [*tiers, (min_tokens, shift)]
        flag, recall, auc = [], [], []
        for n, (post_window, chat_window, c) in parts.items():
            # each turn's logit from its windows (a turn longer than the model's length is several windows)
            alone = c.info.calibration(_text_logits(chat_window, len(va.texts), chosen, c))
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
    progress(f"  second tier: recall {target:.3f} on the posts ({cfg.posts_spare} crisis post(s) over the floor)")
    # nearest the first tier first (`best` keeps the first of equals): the longer lengths up, the shorter ones down
    lengths = [n for n in POSTS_LONG_MIN_TOKENS if n > tiers[0][0]]
    lengths += sorted((n for n in POSTS_MIN_TOKENS if n < tiers[0][0]), reverse=True)
    long_rows = [try_tier(tiers, n, target) for n in lengths]
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
    need = needed_for_recall(n, cfg.posts_recall) + cfg.posts_spare
    return min(need, n) / n if n else cfg.posts_recall


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
