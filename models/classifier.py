"""`CrisisClassifier`: calibrated crisis probabilities for chat messages, in length-sorted batches.

A model directory is either a Vigil artifact (`vigil_model.json`: the default encoder with fine-tuned
top layers and a head, its calibration and threshold) or any local Hugging Face sequence-classification
checkpoint (its `crisis` label, or label 1, is the positive class).

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
from pipeline.errors import ModelError

__all__ = [
    "CrisisClassifier", "ModelInfo", "DEFAULT_MODEL_DIR", "ARTIFACT_FILE", "default_cache_dir", "window_logit",
]

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
                window_temperature=float(meta.get("window_temperature", 0.0)), extra=meta,
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
        weights = {k: v.float() for k, v in load_file(str(model_dir / WEIGHTS_FILE)).items()}
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
        threshold: float | None = None, max_batch_tokens: int = MAX_BATCH_TOKENS,
    ) -> None:
        self._tok = tokenizer
        self.backend = backend
        self.info = info
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
    ) -> CrisisClassifier:
        """Load a model directory (default: the shipped model) with the chosen backend.

        backend "auto" uses ONNX Runtime int8 when the model's card showed it keeps recall at the
        operating threshold within one point of fp32, else torch.
        """
        model_dir = Path(model_dir or DEFAULT_MODEL_DIR)
        info = ModelInfo.read(model_dir)
        tokenizer = load_tokenizer(model_dir, info)
        chosen = backend
        if backend == "auto":
            chosen = "onnx" if info.onnx_recall_ok else "torch"
        try:
            if chosen == "onnx":
                path = (cache_dir or default_cache_dir()) / "onnx" / info.model_version / "model.int8.onnx"
                if not path.is_file():
                    export_onnx_int8(build_module(model_dir, info), path)
                impl: Backend = OnnxBackend(path, threads)
            else:
                impl = TorchBackend(build_module(model_dir, info), threads)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any loader failure is a model failure to the caller
            raise ModelError(f"cannot load model from {model_dir}: {type(exc).__name__}: {exc}") from exc
        return cls(tokenizer, impl, info, batch_size=batch_size, threshold=threshold)

    def _windows(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        width = self.info.max_length - 2
        step = width - _OVERLAP
        encoded = self._tok(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
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
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
        windows, owners = self._windows(texts)
        lengths = [len(w) for w in windows]
        order = np.argsort(lengths, kind="stable")
        window_logits = np.empty(len(windows), dtype=np.float64)
        for idx in self._micro_batches(order, lengths):
            longest = max(len(windows[i]) for i in idx)
            ids = np.full((len(idx), longest), self._pad, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : len(windows[i])] = windows[i]
                mask[row, : len(windows[i])] = 1
            window_logits[idx] = self.backend.logits(ids, mask)
        return window_logits, owners

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated crisis probabilities, one per text."""
        return self.info.calibration(self.logits(texts))
