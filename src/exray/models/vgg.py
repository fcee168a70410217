"""CIFAR-scale VGG with batch normalisation (Simonyan & Zisserman 2015), with a width multiplier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from exray.models.blocks import Classifier, ConvBNReLU, Normalize, scaled
from exray.models.registry import register_architecture

_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """``features``: a flat sequence of conv-BN-ReLU blocks and max-pools; then pooling and a linear layer.

    Each conv-BN-ReLU block has its own ReLU module, so the k-th ReLU in module order is the k-th
    convolutional layer's activation (the SDRM reference code hooks ReLUs by that count, spec §6.1).
    """

    def __init__(self, num_classes: int, config: Sequence[int | str], width: float):
        super().__init__()
        self.normalize = Normalize()
        layers: list[nn.Module] = []
        cin = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                cout = scaled(int(item), width)
                layers.append(ConvBNReLU(cin, cout))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = Classifier(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@register_architecture("vgg11_bn", summary="VGG-11 with batch norm")
def vgg11_bn(num_classes: int, *, width: float = 1.0) -> VGG:
    """VGG-11-BN; ``width`` scales every layer (1.0 = 64…512 channels)."""
    return VGG(num_classes, _CONFIGS["vgg11"], width)


@register_architecture("vgg13_bn", summary="VGG-13 with batch norm")
def vgg13_bn(num_classes: int, *, width: float = 1.0) -> VGG:
    """VGG-13-BN; ``width`` scales every layer."""
    return VGG(num_classes, _CONFIGS["vgg13"], width)


@register_architecture("vgg16_bn", summary="VGG-16 with batch norm")
def vgg16_bn(num_classes: int, *, width: float = 1.0) -> VGG:
    """VGG-16-BN; ``width`` scales every layer."""
    return VGG(num_classes, _CONFIGS["vgg16"], width)
