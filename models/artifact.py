"""A model directory: what it says about itself (`vigil_model.json`, or a Hugging Face config), and the torch
module, the numpy head and the tokenizer built from it.

A Vigil artifact is the default encoder with fine-tuned top layers and a head, its calibration and threshold; any
local Hugging Face sequence-classification checkpoint is read too (its `crisis` label, or label 1, is the positive
class). Heavy libraries (torch, transformers) load when a module is built, not at import.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.calibration import PlattCalibration
from models.char_head import CHAR_HEAD_PREFIX, CharHead
from models.errors import ModelError
from models.head import LOGIT_SCALE, CrisisHead
from models.tokenizer import FastTokenizer, base_encoder_path

__all__ = ["ModelInfo", "DEFAULT_MODEL_DIR", "ARTIFACT_FILE", "WEIGHTS_FILE", "CHAT_HEAD_PREFIX", "POSTS_HEAD_PREFIX",
           "default_cache_dir", "write_artifact", "build_backbone", "build_module", "stored_head", "stored_char_head",
           "load_tokenizer", "READS"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "artifacts" / "default"
ARTIFACT_FILE = "vigil_model.json"
WEIGHTS_FILE = "weights.safetensors"
CHAT_HEAD_PREFIX = "chat_head."
POSTS_HEAD_PREFIX = "posts_head."
# The settings of vigil_model.json that change how a model scores beyond the first models' (its letters, its reading
# of idioms, a smaller encoder). A model lists those it holds (`requires`), and a Vigil that does not read one refuses
# the model rather than score it without it: a setting added later is then never silently ignored by this code.
READS = ("char_head", "idioms", "encoder_layers")


def write_artifact(model_dir: Path, meta: dict[str, Any]) -> None:
    """Write what a model directory says about itself (`vigil_model.json`): every step of a training or a
    calibration that records a choice writes it the same way, with the settings it requires of a reader (`READS`;
    set in `meta` too)."""
    meta["requires"] = [k for k in READS if meta.get(k)]
    (Path(model_dir) / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2))


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
            unread = [k for k in meta.get("requires", []) if k not in READS]
            if unread:
                raise ModelError(f"{model_dir} is scored with {unread}, which this version of Vigil does not read; "
                                 "score it with the Vigil that made it")
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

        head = stored_head(model_dir, info) if info.extra.get("chat_head") else CrisisHead.from_module(module)
        return Embeddings().eval(), head
    return module, None


def stored_head(model_dir: Path, info: ModelInfo) -> CrisisHead:
    """The numpy head stored beside the encoder layers (`chat_head.{k}.weight`, `.bias`; vigil_model.json
    `chat_head` says how to use it)."""
    from safetensors.numpy import load_file

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
                                  if spec.get("posts_long_min_tokens") is not None else None),
                      posts_flag=((float(spec["posts_flag_logit"]), float(spec["posts_squash"]))
                                  if spec.get("posts_flag_logit") is not None else None))


def stored_char_head(model_dir: Path, info: ModelInfo) -> CharHead:
    """The character n-gram head stored beside the encoder (`char_head.idf`, `.coef`; vigil_model.json `char_head`
    says how to use it)."""
    from safetensors.numpy import load_file

    weights = load_file(str(model_dir / WEIGHTS_FILE))
    return CharHead.stored(weights, info.extra["char_head"])


def build_module(model_dir: Path, info: ModelInfo) -> Any:
    """The torch module of a model directory, mapping (input_ids, attention_mask) to crisis logits."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if info.kind == "pooled-head":
        from safetensors.torch import load_file

        from models.encoder import PooledClassifier, load_base_encoder

        encoder_dir = model_dir / "encoder" if (model_dir / "encoder" / "config.json").is_file() else None
        classes = list(info.extra.get("head_classes") or [])
        crisis = [classes.index(c) for c in info.extra.get("crisis_classes") or []]
        depth = info.extra.get("encoder_layers")  # a smaller encoder: the base's first that many layers
        module = PooledClassifier(load_base_encoder(encoder_dir, None if depth is None else int(depth)),
                                  n_classes=max(1, len(classes)), crisis_classes=crisis)
        weights = {k: v.float() for k, v in load_file(str(model_dir / WEIGHTS_FILE)).items()
                   if not k.startswith((CHAT_HEAD_PREFIX, POSTS_HEAD_PREFIX, CHAR_HEAD_PREFIX))}  # numpy heads
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
    """The model's tokenizer: for the default model (and any model of its kind) its fast tokenizer read without
    transformers (`models.tokenizer`: no torch in a scorer that runs ONNX); for a Hugging Face checkpoint,
    transformers' AutoTokenizer."""
    if info.kind == "pooled-head":
        encoder = model_dir / "encoder"
        return FastTokenizer(encoder if (encoder / "tokenizer.json").is_file() else base_encoder_path())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    source = model_dir / "encoder" if (model_dir / "encoder").is_dir() else model_dir
    return AutoTokenizer.from_pretrained(str(source), local_files_only=True)


