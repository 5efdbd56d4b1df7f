"""The options of `vigil train` (posts) and `vigil train --chat-data` (a chat head), shared by their steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.head import POSTS_SQUASH
from vigil_core.rule_names import TARGET_RECALL

__all__ = ["TrainConfig", "ChatTrainConfig", "CHAT_RECALL", "POSTS_RECALL", "FLAG_CEILING"]


@dataclass
class TrainConfig:
    """Training options (defaults are those of the shipped model)."""

    fine_tune: bool = False
    layers: int = 2  # top encoder layers fine-tuned with --fine-tune
    encoder_layers: int | None = None  # with a number: the base encoder's first that many layers only
    epochs: int = 3
    batch_size: int = 16
    lr_layers: float = 4e-5
    lr_head: float = 2e-3
    pos_weight: float = 8.0
    max_length: int = 256
    target_recall: float = TARGET_RECALL
    seed: int = 0
    threads: int = 0
    chat_sentences: int = 0  # with > 0: add up to this many short sentences from training posts (see below)
    extra_train: list[str] = field(default_factory=list)  # CSVs whose train rows join training (add_extra_rows)
    extra_repeat: int = 1  # times each added training row is seen per epoch
    class_column: str | None = None  # with a name: a multi-class head over that column's source classes
    keep_epoch: str = "best"  # with --fine-tune: "best" (selection ROC-AUC) or "last" epoch is kept


CHAT_RECALL = 0.95  # crisis recall kept on chat-form crisis conversations of the validation split (DESIGN 7)
POSTS_RECALL = 0.90  # and on the primary posts' validation split
POSTS_SPARE = 1  # the posts head's long tier keeps that floor with this many crisis posts to spare (posts_target)
POSTS_AUC_TOLERANCE = 0.01  # posts' validation ROC-AUC the long tier may cost
FLAG_CEILING = 0.10  # ordinary conversations flagged: the design's "never above 10%"
CHOICE_TOLERANCE = 0.01  # validation flag rate within which the safer context choice is preferred


@dataclass
class ChatTrainConfig:
    """Options of a chat head fit (defaults are the first chat models'; a model's own are its vigil_model.json's
    `chat_config`, read back by `fitted_like`)."""

    hidden: int = 256  # the head's hidden units (one ReLU layer)
    heads: int = 1  # heads fitted (seeds seed..seed+heads-1) and averaged into one (chat_train.average_heads)
    epochs: int = 6
    batch_size: int = 256
    lr: float = 2e-3
    context_turns: tuple[int, ...] = (2, 3)  # context lengths tried (user turns, the turn itself included)
    crisis_weight: float = 8.0  # sample weight of a crisis row (they are rare)
    posts_weight: float = 10.0  # sample weight of a post (a few thousand posts beside ~100k chat rows)
    posts_squash: float = POSTS_SQUASH  # CrisisHead.posts_flag's squash (0: the posts head's tiers also rank)
    chat_recall: float = CHAT_RECALL
    posts_recall: float = POSTS_RECALL
    posts_spare: int = POSTS_SPARE  # crisis posts over the posts' floor that the long tier keeps on validation
    max_length: int = 256
    threads: int = 0
    seed: int = 0
    kinds: bool = False  # fit and choose on the kinds set too (`chat_data.split_files`)
    chitchat: bool = False  # and on the chit-chat splits (small talk between people, `data/chat_form/chitchat.py`)
    char_weight: float = 0.0  # the character n-gram head's share of a text's logit (models.char_head; 0: none)
    char_c: float = 4.0  # its logistic regression's inverse regularisation
    char_features: int = 2 ** 18  # its hash buckets

    @classmethod
    def fitted_like(cls, stored: dict[str, Any] | None, **overrides: Any) -> ChatTrainConfig:
        """The options a model's head was fitted (or last calibrated) with, from its `chat_config` (the fields this
        version knows; a stored list where a tuple is meant is read as one), with `overrides` on top."""
        known = cls.__dataclass_fields__
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in (stored or {}).items() if k in known}
        return cls(**{**kept, **overrides})
