"""`CrisisClassifier`: calibrated crisis probabilities for chat messages, in length-sorted batches.

A model directory is either a Vigil artifact (`vigil_model.json`: the default encoder with fine-tuned
top layers and a head, its calibration and threshold) or any local Hugging Face sequence-classification
checkpoint (its `crisis` label, or label 1, is the positive class).

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
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.backends import Backend, OnnxBackend, TorchBackend, export_onnx_int8
from models.calibration import PlattCalibration
from models.errors import ModelError
from models.normalise import normalise

__all__ = ["CrisisClassifier", "CrisisHead", "ModelInfo", "TurnScores", "History", "DEFAULT_MODEL_DIR", "ARTIFACT_FILE",
           "default_cache_dir", "window_logit", "context_embedding", "AGGREGATES", "POSTS_MIN_TOKENS",
           "POSTS_LONG_MIN_TOKENS", "with_posts_head"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "artifacts" / "default"
ARTIFACT_FILE = "vigil_model.json"
WEIGHTS_FILE = "weights.safetensors"
_MAX_WINDOWS = 64  # 64 windows of 254 tokens covers any text within the 32 KiB default limit
_OVERLAP = 32
# Padded tokens per forward pass. Length-sorted micro-batches of this size keep padding and the attention
# matrices small: on a 2-core CPU, 128 chat messages run about 1.7x faster as 1,024-token micro-batches than
# as one padded batch (bench/RESULTS.md).
MAX_BATCH_TOKENS = 1024


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


def default_cache_dir() -> Path:
    """Where derived artifacts (the int8 ONNX graph) are written: $XDG_CACHE_HOME/vigil."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vigil"


@dataclass
class ModelInfo:
    """What a model directory says about itself."""

    kind: str  # "pooled-head" or "hf-sequence-classification"
    model_version: str
    threshold: float
    calibration: PlattCalibration
    max_length: int = 256
    trained_layers: list[int] = field(default_factory=list)
    crisis_index: int = 1
    onnx_recall_ok: bool = False
    window_temperature: float = 0.0  # soft maximum over a long text's windows (0: the highest window)
    context_turns: int = 1  # user turns in a turn's context, itself included (1: no context)
    context_aggregate: str = "alone"  # how a turn's score combines its alone and context scores (AGGREGATES)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, model_dir: Path) -> ModelInfo:
        """Read `vigil_model.json`, or derive the info of a plain Hugging Face checkpoint."""
        meta_path = model_dir / ARTIFACT_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            return cls(
                kind=meta["kind"], model_version=meta["model_version"], threshold=float(meta["threshold"]),
                calibration=PlattCalibration(**meta.get("calibration", {})),
                max_length=int(meta.get("max_length", 256)), trained_layers=list(meta.get("trained_layers", [])),
                crisis_index=int(meta.get("crisis_index", 1)), onnx_recall_ok=bool(meta.get("onnx_recall_ok")),
                window_temperature=float(meta.get("window_temperature", 0.0)),
                context_turns=int(meta.get("context_turns", 1)),
                context_aggregate=str(meta.get("context_aggregate", "alone")), extra=meta,
            )
        config_path = model_dir / "config.json"
        if not config_path.is_file():
            raise ModelError(f"{model_dir} holds neither {ARTIFACT_FILE} nor a Hugging Face config.json")
        config = json.loads(config_path.read_text())
        labels = {int(k): str(v).lower() for k, v in (config.get("id2label") or {}).items()}
        crisis_index = next((i for i, name in labels.items() if name in {"crisis", "positive", "label_1"}), 1)
        digest = hashlib.sha256(config_path.read_bytes()).hexdigest()[:8]
        return cls(
            kind="hf-sequence-classification", model_version=f"hf-{model_dir.name}-{digest}", threshold=0.5,
            calibration=PlattCalibration(), max_length=min(512, int(config.get("max_position_embeddings", 512))),
            crisis_index=crisis_index,
        )


class _SequenceLogOdds:
    """Wraps an HF sequence classifier so it returns the crisis log-odds (sigmoid of it = softmax prob)."""

    def __new__(cls, model: Any, crisis_index: int) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
                if logits.shape[-1] == 1:
                    return logits[:, 0]
                log_probs = torch.log_softmax(logits, dim=-1)
                crisis = log_probs[:, crisis_index]
                rest = torch.logsumexp(
                    torch.cat([log_probs[:, :crisis_index], log_probs[:, crisis_index + 1:]], dim=-1), dim=-1
                )
                return crisis - rest

        return Wrapped()


# How a turn's score combines the turn alone (a) and the turn in context (c): "alone" a, "context" c, "max" the
# higher of the two. A model's vigil_model.json names the one chosen on its validation data.
AGGREGATES = ("alone", "context", "max")

# A history entry: the float16 embedding of an earlier user turn, or the index of a text of the same call.
History = Sequence["np.ndarray | int"]


def context_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """The context of a turn: the mean of its and its previous user turns' embeddings, L2-normalised."""
    mean = np.mean(np.stack([np.asarray(e, dtype=np.float64) for e in embeddings]), axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


# Window lengths (tokens, [CLS] and [SEP] included) from which the posts head also judges a window, tried on
# validation by `vigil train --chat-data` (CrisisHead.posts_min_tokens; the card says which was chosen and why).
POSTS_MIN_TOKENS = (12, 16, 24, 32, 48, 64)
# ... and from which a long window is judged by it raised further (CrisisHead.posts_long), the same way.
POSTS_LONG_MIN_TOKENS = (32, 48, 64, 96, 128)


class CrisisHead:
    """The head in numpy: crisis log-odds of pooled, normalised embeddings (a linear layer, or an MLP with ReLU
    hidden layers), so that a turn's context embedding is scored by the same head as the turn.

    With several source classes the crisis logit is logsumexp(crisis classes) - logsumexp(the others), as in
    `models.encoder.PooledClassifier.crisis_logit`.

    A window of `posts_min_tokens` tokens or more is also scored by `posts_head` (the linear head the encoder was
    fine-tuned with, on the Reddit posts and chat turns) lowered by `posts_shift` log-odds, and takes the higher of
    the two: the posts' recall floor (docs/design.md section 7) is met by the head trained on posts without setting the
    threshold that every chat turn is held to, and a content-free turn (shorter than `posts_min_tokens`) is judged
    by the chat head alone. `posts_long`, (min_tokens, shift) if set, is a second such tier for longer windows,
    with its own (lower) shift: a window of that length takes the higher of its tiers.
    """

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]], crisis_classes: Sequence[int],
                 input_scale: float = 1.0, posts_head: CrisisHead | None = None, posts_shift: float = 0.0,
                 posts_min_tokens: int = 64, posts_long: tuple[int, float] | None = None) -> None:
        self.layers = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
        n_classes = len(self.layers[-1][1])
        self.crisis = np.asarray(sorted(crisis_classes), dtype=np.int64)
        self.rest = np.asarray([k for k in range(n_classes) if k not in set(self.crisis.tolist())], dtype=np.int64)
        self.input_scale = float(input_scale)
        self.posts_head = posts_head
        self.posts_shift = float(posts_shift)
        self.posts_min_tokens = int(posts_min_tokens)
        self.posts_long = (int(posts_long[0]), float(posts_long[1])) if posts_long is not None else None

    @classmethod
    def from_module(cls, module: Any) -> CrisisHead:
        """The linear head of a `PooledClassifier` (it sees embeddings scaled by LOGIT_SCALE)."""
        from models.encoder import LOGIT_SCALE

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

    def __call__(self, embeddings: np.ndarray, tokens: np.ndarray | None = None) -> np.ndarray:
        """Crisis logits; with `tokens` (per row), post-length windows are also judged by the posts head."""
        z = self.class_logits(embeddings)
        logits = z[:, 0] if z.shape[1] == 1 else _logsumexp(z[:, self.crisis]) - _logsumexp(z[:, self.rest])
        if tokens is not None and self.posts_head is not None:
            long = np.asarray(tokens) >= min(m for m, _ in self.posts_tiers)
            if long.any():
                emb = np.asarray(embeddings, dtype=np.float64).reshape(-1, self.width)[long]
                logits[long] = with_posts_head(logits[long], self.posts_head(emb), np.asarray(tokens)[long],
                                               self.posts_tiers)
        return logits

    @property
    def posts_tiers(self) -> list[tuple[int, float]]:
        """(min_tokens, shift) of each tier in which the posts head also judges a window."""
        return [(self.posts_min_tokens, self.posts_shift)] + ([self.posts_long] if self.posts_long else [])


def with_posts_head(chat: np.ndarray, posts: np.ndarray, tokens: np.ndarray,
                    tiers: Sequence[tuple[int, float]]) -> np.ndarray:
    """Window logits: the chat head's, or the posts head's lowered by the shift of a tier the window is long enough
    for, whichever is highest."""
    out = np.asarray(chat, dtype=np.float64).copy()
    for min_tokens, shift in tiers:
        out = np.where(tokens >= min_tokens, np.maximum(out, posts - shift), out)
    return out


def _logsumexp(z: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp, summing the columns in one fixed order whatever the number of rows (numpy's own
    reduction over an axis may order the additions by the array's shape, and a score must not depend on its batch)."""
    top = z.max(axis=1)
    total = np.zeros(len(z))
    for column in range(z.shape[1]):
        total += np.exp(z[:, column] - top)
    return top + np.log(total)


@dataclass(frozen=True, slots=True)
class TurnScores:
    """Calibrated scores of user turns: alone, in context, and the turn's score (the model's aggregate of the two).
    `embeddings` (float16) are what later turns of the same conversation take as their history."""

    scores: np.ndarray
    alone: np.ndarray
    context: np.ndarray
    embeddings: np.ndarray | None


def build_backbone(model_dir: Path, info: ModelInfo) -> tuple[Any, CrisisHead | None]:
    """What a backend runs, and the head applied to its outputs: for the default model the encoder's pooled
    embeddings and the numpy head (so a turn's context is scored by the same head); for a Hugging Face checkpoint
    its crisis logits and no head."""
    module = build_module(model_dir, info)
    if info.kind == "pooled-head":
        import torch

        class Embeddings(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = module

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return self.model.embed(input_ids, attention_mask)

        head = _stored_head(model_dir, info) if info.extra.get("chat_head") else CrisisHead.from_module(module)
        return Embeddings().eval(), head
    return module, None


CHAT_HEAD_PREFIX = "chat_head."
POSTS_HEAD_PREFIX = "posts_head."


def _stored_head(model_dir: Path, info: ModelInfo) -> CrisisHead:
    """The numpy head stored beside the encoder layers (`chat_head.{k}.weight`, `.bias`; vigil_model.json
    `chat_head` says how to use it)."""
    from safetensors.numpy import load_file

    from models.encoder import LOGIT_SCALE

    spec = info.extra["chat_head"]
    weights = load_file(str(model_dir / WEIGHTS_FILE))
    layers = [(weights[f"{CHAT_HEAD_PREFIX}{k}.weight"], weights[f"{CHAT_HEAD_PREFIX}{k}.bias"])
              for k in range(int(spec["layers"]))]
    classes = list(info.extra["head_classes"])
    posts_head = None
    if spec.get("posts_head"):
        posts = spec["posts_head"]
        posts_head = CrisisHead([(weights[f"{POSTS_HEAD_PREFIX}weight"], weights[f"{POSTS_HEAD_PREFIX}bias"])],
                                [list(posts["classes"]).index(c) for c in posts["crisis_classes"]],
                                input_scale=LOGIT_SCALE)
    return CrisisHead(layers, [classes.index(c) for c in info.extra["crisis_classes"]],
                      input_scale=float(spec.get("input_scale", 1.0)), posts_head=posts_head,
                      posts_shift=float(spec.get("posts_shift", 0.0)),
                      posts_min_tokens=int(spec.get("posts_min_tokens", 64)),
                      posts_long=((int(spec["posts_long_min_tokens"]), float(spec["posts_long_shift"]))
                                  if spec.get("posts_long_min_tokens") is not None else None))


def build_module(model_dir: Path, info: ModelInfo) -> Any:
    """The torch module of a model directory, mapping (input_ids, attention_mask) to crisis logits."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if info.kind == "pooled-head":
        from safetensors.torch import load_file

        from models.encoder import PooledClassifier, load_base_encoder

        encoder_dir = model_dir / "encoder" if (model_dir / "encoder" / "config.json").is_file() else None
        classes = list(info.extra.get("head_classes") or [])
        crisis = [classes.index(c) for c in info.extra.get("crisis_classes") or []]
        module = PooledClassifier(load_base_encoder(encoder_dir), n_classes=max(1, len(classes)), crisis_classes=crisis)
        weights = {k: v.float() for k, v in load_file(str(model_dir / WEIGHTS_FILE)).items()
                   if not k.startswith(("chat_head.", "posts_head."))}  # numpy heads (build_backbone)
        missing = [k for k in weights if k not in module.state_dict()]
        if missing:
            raise ModelError(f"weights do not match the encoder: {missing[:3]}")
        module.load_state_dict(weights, strict=False)
        return module.eval()
    if info.kind == "hf-sequence-classification":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
        return _SequenceLogOdds(model.eval(), info.crisis_index).eval()
    raise ModelError(f"unknown model kind {info.kind!r}")


def load_tokenizer(model_dir: Path, info: ModelInfo) -> Any:
    """The fast tokenizer of the model (the base encoder's for the default model)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    if info.kind == "pooled-head" and not (model_dir / "encoder" / "tokenizer.json").is_file():
        from models.encoder import base_encoder_path

        return AutoTokenizer.from_pretrained(str(base_encoder_path()), local_files_only=True)
    source = model_dir / "encoder" if (model_dir / "encoder").is_dir() else model_dir
    return AutoTokenizer.from_pretrained(str(source), local_files_only=True)


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
    ) -> None:
        self._tok = tokenizer
        self.backend = backend
        self.info = info
        self.head = head
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.threshold = float(threshold if threshold is not None else info.threshold)
        self.model_version = info.model_version + ("" if backend.name == "torch" else f"+{backend.name}")
        self._cls = int(tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id)
        self._sep = int(tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id)
        self._pad = int(tokenizer.pad_token_id or 0)

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
                "embeddings.int8.onnx" if pooled else "model.int8.onnx")
            if not (chosen == "onnx" and path.is_file() and pooled and info.extra.get("chat_head")):
                module, head = build_backbone(model_dir, info)
            else:
                module, head = None, _stored_head(model_dir, info)
            if chosen == "onnx" and not path.is_file():
                export_onnx_int8(module, path)
            impl: Backend = OnnxBackend(path, threads) if chosen == "onnx" else TorchBackend(module, threads)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any loader failure is a model failure to the caller
            raise ModelError(f"cannot load model from {model_dir}: {type(exc).__name__}: {exc}") from exc
        return cls(tokenizer, impl, info, batch_size=batch_size, threshold=threshold, head=head)

    def _windows(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        width = self.info.max_length - 2
        step = width - _OVERLAP
        # What a reader sees (models.normalise), not the bytes: the same for scoring, training and evaluation.
        shown = [normalise(t) for t in texts]
        encoded = self._tok(shown, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        windows: list[list[int]] = []
        owners: list[int] = []
        for i, ids in enumerate(encoded):
            starts = range(0, max(1, len(ids) - _OVERLAP), step) if len(ids) > width else range(1)
            for start in list(starts)[:_MAX_WINDOWS]:
                windows.append([self._cls, *ids[start:start + width], self._sep])
                owners.append(i)
        return windows, np.asarray(owners, dtype=np.int64)

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

    def window_logits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated crisis logits of every window, and the index of the text each window belongs to."""
        outputs, owners, tokens = self.window_outputs(texts)
        return self._head_logits(outputs, tokens), owners

    def _head_logits(self, outputs: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        if self.head is None:
            return np.asarray(outputs[:, 0] if len(outputs) else np.zeros(0), dtype=np.float64)
        return self.head(outputs, tokens) if len(outputs) else np.zeros(0, dtype=np.float64)

    def window_outputs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The backend's output row of every window (an embedding, or a logit), each window's text, and each
        window's length in tokens."""
        if len(texts) == 0:
            return np.zeros((0, 1), dtype=np.float64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
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
        outputs, owners, tokens = self.window_outputs(texts)
        window_logits = self._head_logits(outputs, tokens)
        logits = window_logit(window_logits, owners, len(texts), self.info.window_temperature)
        if self.head is None or len(texts) == 0:
            return logits, None
        best = np.full(len(texts), -1, dtype=np.int64)
        best_logit = np.full(len(texts), -np.inf)
        for w, (owner, z) in enumerate(zip(owners, window_logits, strict=True)):
            if z > best_logit[owner] or best[owner] < 0:
                best[owner], best_logit[owner] = w, z
        return logits, outputs[best].astype(np.float16)

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
        logits, embeddings = self.embed(texts)
        alone = self.info.calibration(logits)
        if embeddings is None or not self.uses_context:
            return TurnScores(alone, alone, alone, embeddings)
        keep = self.info.context_turns - 1
        contexts = []
        for i in range(len(texts)):
            history = list((histories or [()] * len(texts))[i])[-keep:] if keep else []
            parts = [embeddings[h] if isinstance(h, int | np.integer) else np.asarray(h) for h in history]
            contexts.append(context_embedding([*parts, embeddings[i]]))
        context = self.info.calibration(self.head(np.stack(contexts))) if contexts else alone  # type: ignore[misc]
        return TurnScores(aggregate(self.info.context_aggregate, alone, context), alone, context, embeddings)


def aggregate(how: str, alone: np.ndarray, context: np.ndarray) -> np.ndarray:
    """A turn's score from its alone and context scores (see AGGREGATES)."""
    if how == "alone":
        return alone
    if how == "context":
        return context
    if how == "max":
        return np.maximum(alone, context)
    raise ModelError(f"unknown context aggregate {how!r}; expected one of {AGGREGATES}")
