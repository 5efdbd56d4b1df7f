"""The crisis head in numpy, and how a text's and a turn's scores are put together from its parts.

A text of several token windows scores the soft maximum of its windows (`window_logit`); a user turn in context is
the mean of its and the previous user turns' embeddings (`context_embedding`), scored by the same head, and the
turn's score is the model's `aggregate` of the two. Pure numpy: the same sums in the same order for any batch, so a
replayed turn gets exactly the score it had.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.errors import ModelError

# Cosine-normalised embeddings live in [-1, 1]; a head trained with the encoder (models.encoder.PooledClassifier)
# sees them scaled so its weights stay O(1).
LOGIT_SCALE = 10.0

__all__ = ["LOGIT_SCALE", "CrisisHead", "window_logit", "context_embedding", "aggregate", "with_posts_head",
           "AGGREGATES", "POSTS_MIN_TOKENS", "POSTS_LONG_MIN_TOKENS", "POSTS_SQUASH"]


def window_logit(window_logits: np.ndarray, owners: np.ndarray, n_texts: int, temperature: float) -> np.ndarray:
    """One logit per text from its windows' logits: the log-mean-exp at `temperature`, t * ln(mean(exp(z / t))).

    t = 0 is the highest window; t -> inf the mean. For any t it lies between the mean and the highest window,
    at most t * ln(n) below the highest of n windows, and a text of one window scores that window exactly.
    """
    out = np.full(n_texts, -np.inf)
    np.maximum.at(out, owners, window_logits)
    if temperature <= 0 or len(window_logits) == 0:
        return out
    counts = np.bincount(owners, minlength=n_texts)
    sums = np.zeros(n_texts)
    np.add.at(sums, owners, np.exp((window_logits - out[owners]) / temperature))  # shifted: no overflow
    with np.errstate(divide="ignore", invalid="ignore"):
        soft = out + temperature * np.log(sums / np.maximum(counts, 1))
    return np.where(counts > 0, soft, out)


# How a turn's score combines the turn alone (a) and the turn in context (c): "alone" a, "context" c, "max" the
# higher of the two. A model's vigil_model.json names the one chosen on its validation data.
AGGREGATES = ("alone", "context", "max")


def context_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """The context of a turn: the mean of its and its previous user turns' embeddings, L2-normalised."""
    mean = np.mean(np.stack([np.asarray(e, dtype=np.float64) for e in embeddings]), axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


# Window lengths (tokens, [CLS] and [SEP] included) from which the posts head also judges a window, tried on
# validation by `vigil train --chat-data` (CrisisHead.posts_min_tokens; the card says which was chosen and why).
# 96: a model fitted on the kinds needs the posts head only for post-length text (issue 31; the shipped model's
# card): from 96 tokens it keeps the posts' floor with the fewest chat flags and the best posts' validation ROC-AUC.
POSTS_MIN_TOKENS = (12, 16, 24, 32, 48, 64, 96)
# ... and from which a long window is judged by it raised further (CrisisHead.posts_long), the same way.
POSTS_LONG_MIN_TOKENS = (32, 48, 64, 96, 128)
# How much of a tier's margin over the threshold a window the posts head flags keeps (CrisisHead.posts_flag): the
# posts head's raised log-odds are on another scale than the chat head's, so above the threshold they are divided
# by this, and below it they do not count at all. Measured on a kinds-trained model's validation posts, the tier from
# 56 tokens (ROC-AUC as served: 0.928 with 1, 0.931 with 2, 4 or 16; 0.894 without the flag rule, 0.879 at the
# tier that model had chosen without it); the shipped model's card, "Trained on the kinds", says what it did.
POSTS_SQUASH = 2.0


class CrisisHead:
    """The head in numpy: crisis log-odds of pooled, normalised embeddings (a linear layer, or an MLP with ReLU
    hidden layers), so that a turn's context embedding is scored by the same head as the turn.

    With several source classes the crisis logit is logsumexp(crisis classes) - logsumexp(the others), as in
    `models.encoder.PooledClassifier.crisis_logit`.

    A window of `posts_min_tokens` tokens or more is also scored by `posts_head` (the linear head the encoder was
    fine-tuned with, on the Reddit posts and chat turns) lowered by `posts_shift` log-odds, and takes the higher of
    the two: the posts' recall floor (docs/design.md section 7) is met by the head trained on posts without setting the
    threshold that every chat turn is held to, and a content-free turn (shorter than `posts_min_tokens`) is judged
    by the chat head alone. `posts_long`, (min_tokens, shift) if set, is a second such tier with its own shift,
    usually for longer windows and lower (`choose_posts_head` may also choose a shorter, higher one): a window long
    enough for both takes the higher of its tiers.

    `posts_flag`, (flag_logit, squash) if set, makes the posts head decide without ranking (`with_posts_head`): a
    tier counts only for a window it flags (its lowered logit at or above `flag_logit`, the threshold's logit), and
    then scores `flag_logit` plus its margin divided by `squash`. Every decision at the threshold is the tier's, and
    the order of the texts above and below it is the chat head's: a long ordinary post raised far by the posts
    head no longer outranks a short crisis post that only the chat head judges.
    """

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]], crisis_classes: Sequence[int],
                 input_scale: float = 1.0, posts_head: CrisisHead | None = None, posts_shift: float = 0.0,
                 posts_min_tokens: int = 64, posts_long: tuple[int, float] | None = None,
                 posts_flag: tuple[float, float] | None = None) -> None:
        self.layers = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
        n_classes = len(self.layers[-1][1])
        self.crisis = np.asarray(sorted(crisis_classes), dtype=np.int64)
        self.rest = np.asarray([k for k in range(n_classes) if k not in set(self.crisis.tolist())], dtype=np.int64)
        self.input_scale = float(input_scale)
        self.posts_head = posts_head
        self.posts_shift = float(posts_shift)
        self.posts_min_tokens = int(posts_min_tokens)
        self.posts_long = (int(posts_long[0]), float(posts_long[1])) if posts_long is not None else None
        self.posts_flag = (float(posts_flag[0]), float(posts_flag[1])) if posts_flag is not None else None

    @classmethod
    def from_module(cls, module: Any) -> CrisisHead:
        """The linear head of a `PooledClassifier` (it sees embeddings scaled by LOGIT_SCALE)."""
        return cls([(module.head.weight.detach().float().numpy(), module.head.bias.detach().float().numpy())],
                   module.crisis_index.tolist(), input_scale=LOGIT_SCALE)

    @property
    def width(self) -> int:
        """The embedding size the head takes."""
        return int(self.layers[0][0].shape[1])

    def class_logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores of every class, shape (n, classes).

        One matrix-vector product per row: a matrix product (BLAS, or einsum) may sum a row in another order
        depending on how many rows it is given, and a turn's score must not depend on the batch it came in (a
        replay must reproduce it bit for bit).
        """
        h = np.asarray(embeddings, dtype=np.float64).reshape(-1, self.width) * self.input_scale
        for k, (w, b) in enumerate(self.layers):
            h = np.stack([w @ row for row in h]) + b if len(h) else np.zeros((0, len(b)))
            if k < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def __call__(self, embeddings: np.ndarray, tokens: np.ndarray | None = None,
                 letters: np.ndarray | None = None) -> np.ndarray:
        """Crisis logits; with `tokens` (per row), post-length windows are also judged by the posts head. `letters`
        (per row, models.char_head) are added to the chat head's logit, not to a posts tier's: the posts head
        decides a post-length window on its own (its recall floor), whatever the letters say."""
        z = self.class_logits(embeddings)
        logits = z[:, 0] if z.shape[1] == 1 else _logsumexp(z[:, self.crisis]) - _logsumexp(z[:, self.rest])
        if letters is not None:
            logits = logits + np.asarray(letters, dtype=np.float64)
        if tokens is not None and self.posts_head is not None:
            long = np.asarray(tokens) >= min(m for m, _ in self.posts_tiers)
            if long.any():
                emb = np.asarray(embeddings, dtype=np.float64).reshape(-1, self.width)[long]
                logits[long] = with_posts_head(logits[long], self.posts_head(emb), np.asarray(tokens)[long],
                                               self.posts_tiers, self.posts_flag)
        return logits

    @property
    def posts_tiers(self) -> list[tuple[int, float]]:
        """(min_tokens, shift) of each tier in which the posts head also judges a window."""
        return [(self.posts_min_tokens, self.posts_shift)] + ([self.posts_long] if self.posts_long else [])


def with_posts_head(chat: np.ndarray, posts: np.ndarray, tokens: np.ndarray,
                    tiers: Sequence[tuple[int, float]], flag: tuple[float, float] | None = None) -> np.ndarray:
    """Window logits: the chat head's, or the posts head's lowered by the shift of a tier the window is long enough
    for, whichever is highest. With `flag` (flag_logit, squash), a tier's logit z counts only where z >= flag_logit,
    as flag_logit + (z - flag_logit) / squash (CrisisHead.posts_flag)."""
    out = np.asarray(chat, dtype=np.float64).copy()
    for min_tokens, shift in tiers:
        tier = np.asarray(posts, dtype=np.float64) - shift
        if flag is not None:
            flag_logit, squash = flag
            tier = np.where(tier >= flag_logit, flag_logit + (tier - flag_logit) / squash, -np.inf)
        out = np.where(tokens >= min_tokens, np.maximum(out, tier), out)
    return out


def _logsumexp(z: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp, summing the columns in one fixed order whatever the number of rows (numpy's own
    reduction over an axis may order the additions by the array's shape, and a score must not depend on its batch)."""
    top = z.max(axis=1)
    total = np.zeros(len(z))
    for column in range(z.shape[1]):
        total += np.exp(z[:, column] - top)
    return top + np.log(total)


def aggregate(how: str, alone: np.ndarray, context: np.ndarray) -> np.ndarray:
    """A turn's score from its alone and context scores (see AGGREGATES)."""
    if how == "alone":
        return alone
    if how == "context":
        return context
    if how == "max":
        return np.maximum(alone, context)
    raise ModelError(f"unknown context aggregate {how!r}; expected one of {AGGREGATES}")
