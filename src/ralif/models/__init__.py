"""Encoders (PyTorch), their training loop, feature extraction and devices.

Importing this package needs PyTorch (``pip install 'ralif[torch]'``).
"""

from ralif.models.devices import resolve_device
from ralif.models.encoders import ENCODERS, ResNet18, SmallCNN, make_encoder
from ralif.models.training import (
    TrainConfig,
    extract_features,
    mc_dropout_proba,
    predict_proba,
    train_classifier,
)

__all__ = [
    "ENCODERS",
    "ResNet18",
    "SmallCNN",
    "TrainConfig",
    "extract_features",
    "make_encoder",
    "mc_dropout_proba",
    "predict_proba",
    "resolve_device",
    "train_classifier",
]
