"""A second opinion on a text from its letters: crisis log-odds of a linear model over hashed character n-grams.

The encoder reads word pieces, and a word it has not seen in a crisis is read as the pieces it splits into:
community shorthand, clipped words, misspellings and fragments ("sui", "kms", "unaliving") score as the ordinary
words those pieces come from. Letters carry what the pieces lose: "sui" shares its n-grams with "suicide" and
"suicidal". A chat model may hold this head beside its encoder head (`vigil train --chat-char W`); a text's crisis
logit is then the encoder head's plus W times this one's, before calibration, alone and in context alike (the
context takes the current turn's letters). Measured on the chat-form validation conversations, the sum ranks crises
above ordinary conversations better than either alone (the model card's "Character n-grams").

Features: the normalised text's character n-grams within word boundaries (scikit-learn's `HashingVectorizer`,
`char_wb`, lower-cased), hashed into `features` buckets; sublinear term frequency (1 + ln count) times the inverse
document frequency of the training turns, L2-normalised. Each text is summed alone, in one fixed order, so a text
scores the same in any batch (a replay reproduces it bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.errors import ModelError
from models.normalise import normalise

__all__ = ["CharHead", "CHAR_HEAD_PREFIX", "NGRAM"]

CHAR_HEAD_PREFIX = "char_head."
NGRAM = (2, 5)  # the n-gram lengths a head reads, unless its vigil_model.json says otherwise


def _vectorizer(ngram: tuple[int, int], features: int) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=ngram, n_features=features, alternate_sign=False,
                             norm=None, lowercase=True, dtype=np.float64)


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
        self._vectorizer = _vectorizer(self.ngram, self.features)  # stateless: built once, not per call

    @property
    def features(self) -> int:
        """How many hash buckets."""
        return int(self.idf.size)

    def counts(self, texts: Sequence[str]) -> Any:
        """The hashed character n-gram counts of the normalised texts (CSR, one row per text, indices sorted)."""
        x = self._vectorizer.transform([normalise(t) for t in texts]).tocsr()
        x.sum_duplicates()
        return x

    def features_of(self, texts: Sequence[str]) -> Any:
        """The rows a linear model is fitted on: sublinear tf-idf, L2-normalised (CSR)."""
        return self.weigh(self.counts(texts))

    def weigh(self, counts: Any) -> Any:
        """`counts` (as `counts` gives them) as sublinear tf-idf rows, L2-normalised; `counts` is left as it was."""
        x = counts.copy()
        x.data = (1.0 + np.log(x.data)) * self.idf[x.indices]
        for i in range(x.shape[0]):
            row = slice(x.indptr[i], x.indptr[i + 1])
            norm = float(np.sqrt(np.dot(x.data[row], x.data[row])))
            if norm > 0:
                x.data[row] /= norm
        return x

    def raw(self, texts: Sequence[str]) -> np.ndarray:
        """The linear model's own log-odds, one per text (weight not applied)."""
        x = self.features_of(texts)
        out = np.full(len(texts), self.intercept)
        for i in range(len(texts)):
            row = slice(x.indptr[i], x.indptr[i + 1])
            out[i] += float(np.dot(x.data[row], self.coef[x.indices[row]]))
        return out

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """What the head adds to each text's crisis logit."""
        return self.weight * self.raw(texts) if len(texts) else np.zeros(0)

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
