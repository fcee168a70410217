"""CIFAR-scale ResNet with basic blocks (He et al. 2016), with a width multiplier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from exray.models.blocks import Classifier, ConvBNReLU, Normalize, scaled
from exray.models.registry import register_architecture

_CHANNELS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or 1×1 projection) shortcut.

    The single ``relu`` module is called twice per forward pass, as in torchvision: layer access must
    therefore address blocks, not this module (see :mod:`exray.models.layers`).
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem → four stages of basic blocks (strides 1, 2, 2, 2) → global pooling → linear."""

    def __init__(self, num_classes: int, blocks: Sequence[int], width: float, channels: Sequence[int]):
        super().__init__()
        if len(channels) != len(blocks):
            raise ValueError(f"channels needs one entry per stage ({len(blocks)}), got {list(channels)}")
        channels = [scaled(int(c), width) for c in channels]
        self.normalize = Normalize()
        self.stem = ConvBNReLU(3, channels[0])
        cin = channels[0]
        for i, (cout, n) in enumerate(zip(channels, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stage = nn.Sequential(
                *(BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n))
            )
            self.add_module(f"layer{i + 1}", stage)
            cin = cout
        self.classifier = Classifier(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(x)


@register_architecture("resnet18", summary="CIFAR ResNet-18 (basic blocks 2-2-2-2)")
def resnet18(num_classes: int, *, width: float = 1.0, channels: tuple[int, ...] = _CHANNELS) -> ResNet:
    """CIFAR ResNet-18; ``width`` scales every stage's ``channels`` (default 64-128-256-512). A
    "wide-late" variant such as ``channels=(16, 32, 160, 256)`` keeps the TrojAI-like width at EX-RAY's
    layer (``layer3``) at a fraction of the cost (issue 16, population v2)."""
    return ResNet(num_classes, (2, 2, 2, 2), width, channels)


@register_architecture("resnet10", summary="CIFAR ResNet-10 (basic blocks 1-1-1-1)")
def resnet10(num_classes: int, *, width: float = 1.0, channels: tuple[int, ...] = _CHANNELS) -> ResNet:
    """CIFAR ResNet-10, one basic block per stage: the cheapest residual network whose ``layer3`` can be
    as wide as TrojAI's at EX-RAY's layer on 2 CPU cores (issue 16, population v2)."""
    return ResNet(num_classes, (1, 1, 1, 1), width, channels)


@register_architecture("resnet34", summary="CIFAR ResNet-34 (basic blocks 3-4-6-3)")
def resnet34(num_classes: int, *, width: float = 1.0, channels: tuple[int, ...] = _CHANNELS) -> ResNet:
    """CIFAR ResNet-34; ``width`` scales every stage's ``channels``."""
    return ResNet(num_classes, (3, 4, 6, 3), width, channels)
