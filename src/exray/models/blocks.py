"""Building blocks shared by the registry architectures."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from exray.errors import ConfigError


def scaled(channels: int, width: float, minimum: int = 4) -> int:
    """``channels`` scaled by the width multiplier, at least ``minimum``; the multiplier must be a finite
    number > 0 (a ConfigError otherwise)."""
    if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width < math.inf:
        raise ConfigError(f"width must be a finite number > 0, got {width!r}")
    return max(minimum, round(channels * width))


class Normalize(nn.Module):
    """Per-channel input standardisation: every exray model takes RGB images in [0, 1] (design §4)."""

    def __init__(self, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ConvBNReLU(nn.Sequential):
    """Convolution → batch norm → ReLU; one "convolutional block" of a plain network."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )


class Classifier(nn.Sequential):
    """Global average pooling → flatten → linear layer."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class MLPClassifier(nn.Sequential):
    """VGG's head at CPU scale: average pooling to ``pool``×``pool`` → flatten → two hidden linear layers
    with ReLU → linear. torchvision's VGG (TrojAI's VGG-BN) pools to 7×7 and uses 4,096 hidden units; the
    classes then form in the head, after every convolutional block."""

    def __init__(self, channels: int, num_classes: int, hidden: int = 512, pool: int = 2):
        super().__init__(
            nn.AdaptiveAvgPool2d(pool),
            nn.Flatten(),
            nn.Linear(channels * pool * pool, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
