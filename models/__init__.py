"""The crisis classifier: loading, batched calibrated inference, training, backup lexicon scorer.

Heavy libraries (torch, transformers, onnxruntime) load when a model does, not at import.
"""

from models.backup import BackupScorer
from models.calibration import PlattCalibration, threshold_for_recall
from models.classifier import DEFAULT_MODEL_DIR, CrisisClassifier, ModelInfo
from models.resilient import ResilientScorer, ScoredBatch

__all__ = [
    "DEFAULT_MODEL_DIR",
    "BackupScorer",
    "CrisisClassifier",
    "ModelInfo",
    "PlattCalibration",
    "ResilientScorer",
    "ScoredBatch",
    "threshold_for_recall",
]
