"""`CrisisClassifier`: calibrated crisis probabilities for chat messages, in length-sorted batches.

What a model directory holds and how it is built is `models.artifact`; the head and how a text's windows and a
turn's context combine is `models.head`; the inference backends are `models.backends`. This module runs them.

A user turn is also scored in context (`score_turns`): the mean of its embedding and those of the
conversation's previous user turns, through the same head, so that a crisis said across several turns is caught.
The turn's score is the model's `context_aggregate` of the two (chosen on chat-form validation data; the model
card says which and why). Embeddings are kept at float16, the precision a scorer stores them in between turns,
so a replayed turn gets exactly the score it had.

Long texts are not truncated away: they are cut into overlapping token windows and a text scores the
soft maximum of its windows (`window_logit`): never more than t * ln(windows) under its highest window, so a
crisis sentence at the end of a long message still counts, while a long post is not flagged merely for
having many windows to draw a high score from. A text of one window (any chat-length message) scores
exactly that window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import (
    DEFAULT_MODEL_DIR,
    ModelInfo,
    build_backbone,
    default_cache_dir,
    load_tokenizer,
    stored_char_head,
    stored_head,
)
from models.backends import INT8_GRAPH, Backend, OnnxBackend, TorchBackend, export_onnx_int8
from models.char_head import CharHead
from models.errors import ModelError
from models.head import CrisisHead, aggregate, context_embedding, window_logit
from models.idioms import IDIOMS_VERSION, read_idioms
from models.normalise import normalise

__all__ = ["CrisisClassifier", "TurnScores", "History"]

_MAX_WINDOWS = 64  # 64 windows of 254 tokens covers any text within the 32 KiB default limit
_OVERLAP = 32
# Padded tokens per forward pass. Length-sorted micro-batches of this size keep padding and the attention
# matrices small: on a 2-core CPU, 128 chat messages run about 1.7x faster as 1,024-token micro-batches than
# as one padded batch (bench/RESULTS.md).
MAX_BATCH_TOKENS = 1024


# A history entry: the float16 embedding of an earlier user turn, or the index of a text of the same call.
History = Sequence["np.ndarray | int"]


@dataclass(frozen=True, slots=True)
class TurnScores:
    """Calibrated scores of user turns: alone, in context, and the turn's score (the model's aggregate of the two).
    `embeddings` (float16) are what later turns of the same conversation take as their history."""

    scores: np.ndarray
    alone: np.ndarray
    context: np.ndarray
    embeddings: np.ndarray | None


class CrisisClassifier:
    """Calibrated crisis probabilities.

    Example:
        clf = CrisisClassifier.load()              # the shipped default
        probs = clf.predict(["I want to die", "killed it at work today"])
        flagged = probs >= clf.threshold
    """

    def __init__(
        self, tokenizer: Any, backend: Backend, info: ModelInfo, batch_size: int = 64,
        threshold: float | None = None, max_batch_tokens: int = MAX_BATCH_TOKENS, head: CrisisHead | None = None,
        char_head: CharHead | None = None,
    ) -> None:
        self._tok = tokenizer
        self.backend = backend
        self.info = info
        self.head = head
        self.char_head = char_head
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.threshold = float(threshold if threshold is not None else info.threshold)
        self.model_version = info.model_version + ("" if backend.name == "torch" else f"+{backend.name}")
        self._cls = int(tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id)
        self._sep = int(tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id)
        self._pad = int(tokenizer.pad_token_id or 0)
        self._kept: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        idioms = info.extra.get("idioms")
        if idioms not in (None, IDIOMS_VERSION):
            raise ModelError(f"the model reads idioms by {idioms}, this code by {IDIOMS_VERSION}")
        self._idioms = idioms == IDIOMS_VERSION

    def keep_outputs(self) -> None:
        """From now on, remember each call's window outputs by its texts (the encoder's pass, whatever the head's
        settings): a model's calibration reads the same validation turns for each of its choices. Never for a
        served model (it would keep every text it scored)."""
        self._kept = {}

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        backend: str = "auto",
        threads: int = 0,
        batch_size: int = 64,
        threshold: float | None = None,
        cache_dir: Path | None = None,
        version: str | None = None,
    ) -> CrisisClassifier:
        """Load a model directory (default: the shipped model) with the chosen backend.

        backend "auto" uses ONNX Runtime int8 when the model's card showed it keeps recall at the
        operating threshold within one point of fp32, else torch. `version` (a model store's version id) replaces
        the directory's own model_version: the name every score carries and the key of its ONNX cache.
        """
        model_dir = Path(model_dir or DEFAULT_MODEL_DIR)
        info = ModelInfo.read(model_dir)
        if version:
            info.model_version = version
        tokenizer = load_tokenizer(model_dir, info)
        chosen = backend
        if backend == "auto":
            chosen = "onnx" if info.onnx_recall_ok else "torch"
        try:
            # The graph ends at the pooled embedding for the default model (its head runs in numpy). Cached, with the
            # head stored in numpy, it is all the ONNX backend runs: no torch encoder is built (bench/RESULTS.md).
            pooled = info.kind == "pooled-head"
            path = (cache_dir or default_cache_dir()) / "onnx" / info.model_version / (
                ("embeddings" if pooled else "model") + INT8_GRAPH)
            if not (chosen == "onnx" and path.is_file() and pooled and info.extra.get("chat_head")):
                module, head = build_backbone(model_dir, info)
            else:
                module, head = None, stored_head(model_dir, info)
            if chosen == "onnx" and not path.is_file():
                export_onnx_int8(module, path)
            impl: Backend = OnnxBackend(path, threads) if chosen == "onnx" else TorchBackend(module, threads)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any loader failure is a model failure to the caller
            raise ModelError(f"cannot load model from {model_dir}: {type(exc).__name__}: {exc}") from exc
        char = stored_char_head(model_dir, info) if info.extra.get("char_head") else None
        return cls(tokenizer, impl, info, batch_size=batch_size, threshold=threshold, head=head, char_head=char)

    def _windows(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        width = self.info.max_length - 2
        step = width - _OVERLAP
        shown = [self.read(t) for t in texts]
        encoded = self._tok(shown, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        windows: list[list[int]] = []
        owners: list[int] = []
        for i, ids in enumerate(encoded):
            starts = range(0, max(1, len(ids) - _OVERLAP), step) if len(ids) > width else range(1)
            for start in list(starts)[:_MAX_WINDOWS]:
                windows.append([self._cls, *ids[start:start + width], self._sep])
                owners.append(i)
        return windows, np.asarray(owners, dtype=np.int64)

    def read(self, text: str) -> str:
        """What the model reads of a text: what a reader sees (models.normalise), not the bytes, and where its scoring
        settings say so, its idioms of death read for what they mean (models.idioms); the same wherever the model
        scores (the scorer, its calibration, `vigil model eval`), its letters included."""
        shown = normalise(text)
        return read_idioms(shown) if self._idioms else shown

    def _micro_batches(self, order: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
        """Consecutive runs of the length-sorted windows: at most `batch_size` rows and at most
        `max_batch_tokens` padded tokens each (always at least one row)."""
        batches: list[np.ndarray] = []
        start = 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < self.batch_size
                   and (end - start + 1) * lengths[order[end]] <= self.max_batch_tokens):
                end += 1
            batches.append(order[start:end])
            start = end
        return batches

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated crisis logits, one per text (the soft maximum of its windows, `window_logit`)."""
        window_logits, owners = self.window_logits(texts)
        return window_logit(window_logits, owners, len(texts), self.info.window_temperature)

    def letters(self, texts: Sequence[str]) -> np.ndarray:
        """What the model's character n-gram head adds to each text's crisis logit, alone and in context
        (`models.char_head`; zeros for a model without one)."""
        if self.char_head is None:
            return np.zeros(len(texts))
        return self.char_head(texts, self.read)

    def window_logits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated crisis logits of every window, and the index of the text each window belongs to."""
        outputs, owners, tokens = self.window_outputs(texts)
        return self._head_logits(outputs, tokens, self.letters(texts)[owners]), owners

    def _head_logits(self, outputs: np.ndarray, tokens: np.ndarray, letters: np.ndarray) -> np.ndarray:
        """Each window's logit: the chat head's plus its text's letters, or a posts tier's (CrisisHead.__call__)."""
        if self.head is None:
            return np.asarray(outputs[:, 0] if len(outputs) else np.zeros(0), dtype=np.float64) + letters
        return self.head(outputs, tokens, letters) if len(outputs) else np.zeros(0, dtype=np.float64)

    def window_outputs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The backend's output row of every window (an embedding, or a logit), each window's text, and each
        window's length in tokens."""
        if len(texts) == 0:
            return np.zeros((0, 1), dtype=np.float64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if self._kept is None:
            return self._window_outputs(texts)
        digest = hashlib.sha256()
        for text in texts:
            raw = text.encode("utf-8", "surrogatepass")
            digest.update(len(raw).to_bytes(8, "little") + raw)
        key = digest.digest()
        if key not in self._kept:
            kept = self._window_outputs(texts)
            for array in kept:
                array.setflags(write=False)  # shared by every later call with these texts
            self._kept[key] = kept
        return self._kept[key]

    def _window_outputs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        windows, owners = self._windows(texts)
        lengths = [len(w) for w in windows]
        order = np.argsort(lengths, kind="stable")
        outputs: np.ndarray | None = None
        for idx in self._micro_batches(order, lengths):
            longest = max(len(windows[i]) for i in idx)
            ids = np.full((len(idx), longest), self._pad, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : len(windows[i])] = windows[i]
                mask[row, : len(windows[i])] = 1
            out = np.asarray(self.backend.outputs(ids, mask), dtype=np.float64).reshape(len(idx), -1)
            if outputs is None:
                outputs = np.empty((len(windows), out.shape[1]), dtype=np.float64)
            outputs[idx] = out
        if outputs is None:  # every text has at least one window, so this cannot happen
            raise ModelError("no windows to score")
        return outputs, owners, np.asarray(lengths, dtype=np.int64)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated crisis probabilities, one per text, each text alone."""
        return self.info.calibration(self.logits(texts))

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Each text's crisis logit alone and its float16 embedding (that of its highest window), or None
        for a model without a numpy head (a Hugging Face checkpoint: no context scoring)."""
        logits, embeddings, _ = self.embed_parts(texts)
        return logits, embeddings

    def embed_parts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """`embed`, and each text's letters (the character head's part of its logit, in it): a turn in context is
        scored by the head on the context's embedding plus the turn's letters."""
        outputs, owners, tokens = self.window_outputs(texts)
        letters = self.letters(texts)
        window_logits = self._head_logits(outputs, tokens, letters[owners])
        logits = window_logit(window_logits, owners, len(texts), self.info.window_temperature)
        if self.head is None or len(texts) == 0:
            return logits, None, letters
        best = np.full(len(texts), -1, dtype=np.int64)
        best_logit = np.full(len(texts), -np.inf)
        for w, (owner, z) in enumerate(zip(owners, window_logits, strict=True)):
            if z > best_logit[owner] or best[owner] < 0:
                best[owner], best_logit[owner] = w, z
        return logits, outputs[best].astype(np.float16), letters

    @property
    def uses_context(self) -> bool:
        """Whether a turn's score depends on the conversation's earlier user turns."""
        return self.head is not None and self.info.context_turns > 1 and self.info.context_aggregate != "alone"

    def score_turns(self, texts: Sequence[str], histories: Sequence[History] | None = None) -> TurnScores:
        """Calibrated scores of user turns with their conversations' earlier user turns as context.

        `histories[i]`: the earlier user turns of text i's conversation, oldest first, each a float16 embedding
        (from an earlier call's `TurnScores.embeddings`) or the index of an earlier text of this call. Only the
        last `context_turns - 1` count. Without histories every turn is its conversation's first.
        """
        logits, embeddings, letters = self.embed_parts(texts)
        alone = self.info.calibration(logits)
        if embeddings is None or not self.uses_context:
            return TurnScores(alone, alone, alone, embeddings)
        keep = self.info.context_turns - 1
        contexts = []
        for i in range(len(texts)):
            history = list((histories or [()] * len(texts))[i])[-keep:] if keep else []
            parts = [embeddings[h] if isinstance(h, int | np.integer) else np.asarray(h) for h in history]
            contexts.append(context_embedding([*parts, embeddings[i]]))
        context = (self.info.calibration(self.head(np.stack(contexts)) + letters)  # type: ignore[misc]
                   if contexts else alone)
        return TurnScores(aggregate(self.info.context_aggregate, alone, context), alone, context, embeddings)
