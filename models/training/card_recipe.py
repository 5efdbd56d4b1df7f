"""How a chat model was made, in its card's words: what the encoder was fine-tuned on and the `vigil train
--chat-data` options that reproduce its head (models.training.card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.training.train_config import ChatTrainConfig

__all__ = ["encoder_extra", "chat_options"]


def encoder_extra(init: dict[str, Any]) -> str:
    """What the encoder was fine-tuned on beside the posts (its `--extra-train` files)."""
    files = [Path(f).name for f in (init.get("config") or {}).get("extra_train") or []]
    if not files or files == ["chat_contrast.csv", "chat_finetune.csv"]:
        return ("the team's contrast turns and a sample of the chat-form training turns, "
                "`data/chat_form/chat_finetune.csv`")
    return ", ".join(f"`{f}`" for f in files)


def chat_options(cfg: dict[str, Any]) -> str:
    """The `vigil train --chat-data` options that reproduce a head's chat configuration."""
    out = " --chat-kinds" if cfg.get("kinds") else ""
    if cfg.get("chat_recall") is not None and cfg["chat_recall"] != ChatTrainConfig.chat_recall:
        out += f" --chat-recall {cfg['chat_recall']:g}"
    if cfg.get("posts_weight") is not None and cfg["posts_weight"] != ChatTrainConfig.posts_weight:
        out += f" --chat-posts-weight {cfg['posts_weight']:g}"
    return out
