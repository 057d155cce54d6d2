"""Image encoders for small inputs (28x28 or 32x32, 1 or 3 channels), no torchvision.

Every encoder maps images to a feature vector (``features``) and has a linear
classifier on top (``fc``); ``forward`` returns logits. Dropout before ``fc`` makes
MC-dropout sampling possible.
"""

from __future__ import annotations

import torch
from torch import nn

from ralif._validation import RalifInputError


class SmallCNN(nn.Module):
    """Two conv blocks and a 128-unit layer, small enough to train on a CPU each round.

    Parameters
    ----------
    in_channels : int
        1 (grey) or 3 (colour).
    n_classes : int
        Outputs of the classifier.
    width : int, default=32
        Channels of the first block (the second has twice as many).
    feature_dim : int, default=128
        Size of the feature vector.
    dropout : float, default=0.25
        Dropout before the classifier.
    batch_norm : bool, default=True
        Batch normalisation after each convolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        width: int = 32,
        feature_dim: int = 128,
        dropout: float = 0.25,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            norm(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            norm(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, n_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al., 2016) for small images: a 3x3 stem without max-pooling.

    Parameters
    ----------
    in_channels : int
        1 or 3.
    n_classes : int
        Outputs of the classifier.
    dropout : float, default=0.0
        Dropout before the classifier (set it for MC dropout).
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        layers, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, n_classes)
        self.feature_dim = 512

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def _check_input(x: torch.Tensor, in_channels: int) -> None:
    if x.dim() != 4:
        raise RalifInputError(
            f"images must be 4-D (batch, channels, height, width), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise RalifInputError(
            f"the encoder expects {in_channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if x.shape[2] < 8 or x.shape[3] < 8:
        raise RalifInputError(f"images of {x.shape[2]}x{x.shape[3]} are too small (at least 8x8)")


ENCODERS = {"cnn": SmallCNN, "resnet18": ResNet18}


class FeatureOutput(nn.Module):
    """An encoder whose output is its feature vector: ``forward`` is ``encoder.features``.

    Parameters
    ----------
    encoder : nn.Module
        One with a ``features`` method (every encoder of this module).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch types a submodule read as an attribute as Tensor | Module, not callable.
        return self.encoder.features(x)  # type: ignore[operator]


def make_encoder(name: str, in_channels: int, n_classes: int, **kwargs: object) -> nn.Module:
    """Build the encoder registered under ``name`` (``"cnn"`` or ``"resnet18"``).

    Parameters
    ----------
    name : str
        A key of :data:`ENCODERS`.
    in_channels : int
        Channels of the images it takes.
    n_classes : int
        Outputs of its classifier.
    **kwargs
        Passed to the encoder's constructor (``dropout``).

    Returns
    -------
    nn.Module
        With freshly drawn weights (from torch's global generator).
    """
    if name not in ENCODERS:
        raise RalifInputError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
    return ENCODERS[name](in_channels=in_channels, n_classes=n_classes, **kwargs)
