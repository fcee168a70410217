"""A small multi-branch Inception network (GoogLeNet-style, Szegedy et al. 2015) for CIFAR-scale inputs."""

from __future__ import annotations

import torch
from torch import nn

from exray.models.blocks import Classifier, ConvBNReLU, Normalize, scaled
from exray.models.registry import register_architecture


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated: 1×1; 1×1→3×3; 1×1→3×3→3×3 (a 5×5 field); 3×3 max-pool→1×1."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int):
        super().__init__()
        self.branch1 = ConvBNReLU(cin, c1, kernel=1)
        self.branch3 = nn.Sequential(ConvBNReLU(cin, c3r, kernel=1), ConvBNReLU(c3r, c3))
        self.branch5 = nn.Sequential(ConvBNReLU(cin, c5r, kernel=1), ConvBNReLU(c5r, c5), ConvBNReLU(c5, c5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvBNReLU(cin, cp, kernel=1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


# GoogLeNet's inception 3a, 3b, (pool) 4a, 4b, (pool) 5a — channel plans (c1, c3r, c3, c5r, c5, cp).
_PLAN: list[tuple[int, int, int, int, int, int] | str] = [
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "pool",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    "pool",
    (256, 160, 320, 32, 128, 128),
]


class Inception(nn.Module):
    """Stem → inception blocks with two max-pools → global pooling → linear."""

    def __init__(self, num_classes: int, width: float):
        super().__init__()
        self.normalize = Normalize()
        cin = scaled(192, width)
        self.features = nn.Sequential()
        self.features.add_module("stem", ConvBNReLU(3, cin))
        names = iter(
            ["inception3a", "inception3b", "pool3", "inception4a", "inception4b", "pool4", "inception5a"]
        )
        for item in _PLAN:
            name = next(names)
            if item == "pool":
                self.features.add_module(name, nn.MaxPool2d(3, 2, 1))
                continue
            block = InceptionBlock(cin, *(scaled(c, width) for c in item))
            self.features.add_module(name, block)
            cin = block.out_channels
        self.classifier = Classifier(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@register_architecture("inception", summary="small GoogLeNet-style multi-branch network")
def inception(num_classes: int, *, width: float = 1.0) -> Inception:
    """GoogLeNet-style network with five inception blocks; ``width`` scales every branch."""
    return Inception(num_classes, width)
