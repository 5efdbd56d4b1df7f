"""A second opinion on a text from its letters: crisis log-odds of a linear model over hashed character n-grams.

The encoder reads word pieces, and a word it has not seen in a crisis is read as the pieces it splits into:
community shorthand, clipped words, misspellings and fragments ("sui", "kms", "unaliving") score as the ordinary
words those pieces come from. Letters carry what the pieces lose: "sui" shares its n-grams with "suicide" and
"suicidal". A chat model may hold this head beside its encoder head (`vigil train --chat-char W`); a text's crisis
logit is then the encoder head's plus W times this one's, before calibration, alone and in context alike (the
context takes the current turn's letters). Measured on the chat-form validation conversations, the sum ranks crises
above ordinary conversations better than either alone (the model card's "Character n-grams").

Features: the normalised text's character n-grams within word boundaries, lower-cased, each hashed into one of
`features` buckets: exactly scikit-learn's `HashingVectorizer(analyzer="char_wb", alternate_sign=False)` (a test
holds the two bucket for bucket), read here with `mmh3` and numpy so that a scorer loads neither scikit-learn nor
scipy (about 90 MB resident: bench/RESULTS.md); sublinear term frequency (1 + ln count) times the inverse document
frequency of the training turns, L2-normalised. Each text is summed alone, in one fixed order, so a text scores the
same in any batch (a replay reproduces it bit for bit). A word's n-grams never reach past it, so the buckets of the
common English words (the normaliser's word list) are read once a process and looked up; nothing of a user's text is
kept after it is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import mmh3
import numpy as np

from models.errors import ModelError
from models.normalise import normalise, word_counts

__all__ = ["CharHead", "CHAR_HEAD_PREFIX", "NGRAM", "word_ngrams", "buckets"]

CHAR_HEAD_PREFIX = "char_head."
NGRAM = (2, 5)  # the n-gram lengths a head reads, unless its vigil_model.json says otherwise


def word_ngrams(word: str, ngram: tuple[int, int]) -> list[str]:
    """A word's character n-grams as `char_wb` reads them: the word between two spaces, each length from ngram[0] to
    ngram[1] at each offset; a word shorter than a length is counted once, whole, and no longer lengths are read."""
    w = f" {word} "
    out: list[str] = []
    for n in range(ngram[0], ngram[1] + 1):
        out += [w[i:i + n] for i in range(max(1, len(w) - n + 1))]
        if len(w) <= n:
            break
    return out


def _word_buckets(word: str, ngram: tuple[int, int], features: int) -> list[int]:
    """Where scikit-learn's `FeatureHasher` puts each of a word's n-grams: |signed MurmurHash3 x86 32-bit of its
    UTF-8, seed 0| mod `features` (Python's abs of -2**31 is 2**31, the value scikit-learn defines for the one hash
    with no 32-bit absolute value)."""
    return [abs(mmh3.hash(gram, 0, True)) % features for gram in word_ngrams(word, ngram)]


@lru_cache(maxsize=2)
def _common_words(ngram: tuple[int, int], features: int) -> dict[str, np.ndarray]:
    """The buckets of the 12,761 common English words of the normaliser's word list (most of a chat turn's words),
    read once for the head a process serves (0.2 s, about 5 MB): the letters then take about 110 microseconds a turn
    instead of 180 (bench/RESULTS.md)."""
    return {w: np.asarray(_word_buckets(w, ngram, features), dtype=np.int64) for w in word_counts()}


def buckets(text: str, ngram: tuple[int, int], features: int) -> np.ndarray:
    """The bucket of each of a text's character n-grams, lower-cased, word by word (int64, in reading order)."""
    common = _common_words(ngram, features)
    return np.concatenate([common[w] if w in common else np.asarray(_word_buckets(w, ngram, features), np.int64)
                           for w in text.lower().split()] or [np.zeros(0, np.int64)])


class CharHead:
    """Crisis log-odds from hashed character n-grams, times `weight` (the share a chat model gives them)."""

    def __init__(self, idf: np.ndarray, coef: np.ndarray, intercept: float, weight: float,
                 ngram: tuple[int, int] = NGRAM) -> None:
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        if self.idf.shape != self.coef.shape or self.idf.ndim != 1:
            raise ModelError(f"char head: idf {self.idf.shape} and coef {self.coef.shape} must be one same length")
        self.intercept = float(intercept)
        self.weight = float(weight)
        self.ngram = (int(ngram[0]), int(ngram[1]))

    @property
    def features(self) -> int:
        """How many hash buckets."""
        return int(self.idf.size)

    def row(self, text: str, read: Callable[[str], str] = normalise) -> tuple[np.ndarray, np.ndarray]:
        """A text's non-empty buckets (sorted) and their counts (float64), of the text as `read` gives it (normalised,
        or as the crisis model reads it: `CrisisClassifier.read`)."""
        found, count = np.unique(buckets(read(text), self.ngram, self.features), return_counts=True)
        return found, count.astype(np.float64)

    def counts(self, texts: Sequence[str]) -> Any:
        """The hashed character n-gram counts of the normalised texts (scipy CSR, one row per text, indices sorted):
        what a linear model is fitted on. Training only: a scorer reads `raw`, which needs no scipy."""
        from scipy.sparse import csr_matrix

        rows = [self.row(t) for t in texts]
        indptr = np.cumsum([0] + [found.size for found, _ in rows])
        indices = np.concatenate([found for found, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
        data = np.concatenate([count for _, count in rows]) if rows else np.zeros(0)
        return csr_matrix((data, indices, indptr), shape=(len(texts), self.features))

    def _weights(self, found: np.ndarray, count: np.ndarray) -> np.ndarray:
        """One row's sublinear tf-idf, L2-normalised (the row's buckets `found`, sorted)."""
        data = (1.0 + np.log(count)) * self.idf[found]
        norm = float(np.sqrt(np.dot(data, data)))
        return data / norm if norm > 0 else data

    def weigh(self, counts: Any) -> Any:
        """`counts` (as `counts` gives them) as sublinear tf-idf rows, L2-normalised; `counts` is left as it was."""
        x = counts.copy()
        for i in range(x.shape[0]):
            row = slice(x.indptr[i], x.indptr[i + 1])
            x.data[row] = self._weights(x.indices[row], x.data[row])
        return x

    def raw(self, texts: Sequence[str], read: Callable[[str], str] = normalise) -> np.ndarray:
        """The linear model's own log-odds, one per text (weight not applied)."""
        out = np.full(len(texts), self.intercept)
        for i, text in enumerate(texts):
            found, count = self.row(text, read)
            out[i] += float(np.dot(self._weights(found, count), self.coef[found]))
        return out

    def __call__(self, texts: Sequence[str], read: Callable[[str], str] = normalise) -> np.ndarray:
        """What the head adds to each text's crisis logit."""
        return self.weight * self.raw(texts, read) if len(texts) else np.zeros(0)

    def spec(self) -> dict[str, Any]:
        """How vigil_model.json records it (the arrays are in the weights file)."""
        return {"analyzer": "char_wb", "ngram": list(self.ngram), "features": self.features,
                "intercept": self.intercept, "weight": self.weight}

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays the weights file holds (float32)."""
        return {f"{CHAR_HEAD_PREFIX}idf": self.idf.astype(np.float32),
                f"{CHAR_HEAD_PREFIX}coef": self.coef.astype(np.float32)}

    @classmethod
    def stored(cls, weights: dict[str, np.ndarray], spec: dict[str, Any]) -> CharHead:
        """The head a model directory holds (its weights file and vigil_model.json `char_head`)."""
        if spec.get("analyzer", "char_wb") != "char_wb":
            raise ModelError(f"unknown char head analyzer {spec.get('analyzer')!r}")
        idf, coef = weights[f"{CHAR_HEAD_PREFIX}idf"], weights[f"{CHAR_HEAD_PREFIX}coef"]
        if int(spec["features"]) != idf.size:
            raise ModelError(f"char head: {idf.size} buckets stored, {spec['features']} declared")
        ngram = spec.get("ngram", NGRAM)
        return cls(idf, coef, float(spec["intercept"]), float(spec["weight"]), (int(ngram[0]), int(ngram[1])))
