"""CIFAR-scale DenseNet-BC (Huang et al. 2017): dense blocks that concatenate, compressed transitions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from exray.errors import ConfigError
from exray.models.blocks import Classifier, Normalize, scaled
from exray.models.registry import register_architecture


class DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv (bottleneck) → BN-ReLU-3×3 conv; its output is concatenated to its input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1×1 conv that compresses the channels, then 2×2 average pooling."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    """Stem → stages (dense block + transition; the last stage ends with BN-ReLU) → pooling → linear."""

    def __init__(self, num_classes: int, blocks: Sequence[int], growth: int, compression: float = 0.5):
        super().__init__()
        self.normalize = Normalize()
        channels = 2 * growth
        self.features = nn.Sequential()
        self.features.add_module("stem", nn.Conv2d(3, channels, 3, 1, 1, bias=False))
        for i, n in enumerate(blocks):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if i < len(blocks) - 1:
                out = max(growth, int(channels * compression))
                layers.append(Transition(channels, out))
                channels = out
            else:
                layers += [nn.BatchNorm2d(channels), nn.ReLU()]
            self.features.add_module(f"stage{i + 1}", nn.Sequential(*layers))
        self.classifier = Classifier(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


#: Most dense layers a :func:`densenet` may have (a config cannot make it build millions of modules).
MAX_DENSE_LAYERS = 256


@register_architecture("densenet", summary="CIFAR DenseNet-BC (3 dense blocks)")
def densenet(num_classes: int, *, width: float = 1.0, blocks: tuple[int, ...] = (6, 12, 24)) -> DenseNet:
    """DenseNet-BC with growth rate ``12 * width`` and ``blocks`` dense layers per stage (each ≥ 1, at most
    :data:`MAX_DENSE_LAYERS` in all: DenseNet-201 has 98)."""
    blocks = tuple(blocks)
    if not blocks or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in blocks):
        raise ConfigError(f"blocks must be positive integers, got {blocks!r:.80}")
    if sum(blocks) > MAX_DENSE_LAYERS:
        raise ConfigError(f"blocks hold {sum(blocks):,} dense layers; the limit is {MAX_DENSE_LAYERS}")
    return DenseNet(num_classes, tuple(blocks), scaled(12, width, minimum=2))
