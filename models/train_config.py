"""The options of `vigil train`, shared by its steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.calibration import TARGET_RECALL

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Training options (defaults are those of the shipped model)."""

    fine_tune: bool = False
    layers: int = 2  # top encoder layers fine-tuned with --fine-tune
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
