"""The crisis classifier at run time: the artifact, the head, batched calibrated inference, the backup lexicon
scorer. Training is `models.training`, which nothing here imports.

Heavy libraries (torch, transformers, onnxruntime) load when a model does, not at import.
"""

from models.artifact import DEFAULT_MODEL_DIR, ModelInfo
from models.backup import BackupScorer
from models.calibration import PlattCalibration
from models.classifier import CrisisClassifier
from models.resilient import ResilientScorer, ScoredBatch

__all__ = [
    "DEFAULT_MODEL_DIR",
    "BackupScorer",
    "CrisisClassifier",
    "ModelInfo",
    "PlattCalibration",
    "ResilientScorer",
    "ScoredBatch",
]
