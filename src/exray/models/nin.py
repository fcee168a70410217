"""Network-in-Network (Lin et al. 2014) for CIFAR, with batch norm and a width multiplier."""

from __future__ import annotations

import torch
from torch import nn

from exray.models.blocks import ConvBNReLU, Normalize, scaled
from exray.models.registry import register_architecture


class NiN(nn.Module):
    """Three "mlpconv" stages (a spatial conv followed by two 1×1 convs); the last stage ends with one
    channel per class, and global average pooling gives the logits (no fully connected layer)."""

    def __init__(self, num_classes: int, width: float):
        super().__init__()
        w192, w160, w96 = scaled(192, width), scaled(160, width), scaled(96, width)
        self.normalize = Normalize()
        self.stage1 = nn.Sequential(
            ConvBNReLU(3, w192, kernel=5),
            ConvBNReLU(w192, w160, kernel=1),
            ConvBNReLU(w160, w96, kernel=1),
            nn.MaxPool2d(3, 2, 1),
        )
        self.stage2 = nn.Sequential(
            ConvBNReLU(w96, w192, kernel=5),
            ConvBNReLU(w192, w192, kernel=1),
            ConvBNReLU(w192, w192, kernel=1),
            nn.AvgPool2d(3, 2, 1),
        )
        self.stage3 = nn.Sequential(
            ConvBNReLU(w192, w192, kernel=3),
            ConvBNReLU(w192, w192, kernel=1),
            nn.Conv2d(w192, num_classes, 1),
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage3(self.stage2(self.stage1(self.normalize(x)))))


@register_architecture("nin", summary="Network-in-Network")
def nin(num_classes: int, *, width: float = 1.0) -> NiN:
    """Network-in-Network; ``width`` scales the 192/160/96-channel mlpconv layers."""
    return NiN(num_classes, width)
