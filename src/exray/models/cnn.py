"""A plain convolutional network: the cheapest registry model, for quick experiments and tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from exray.errors import ConfigError
from exray.models.blocks import Classifier, ConvBNReLU, MLPClassifier, Normalize, scaled
from exray.models.registry import register_architecture

#: Classifier heads: "linear" (global pooling → linear) or "mlp" (VGG's pooled two-hidden-layer head).
HEADS = ("linear", "mlp")
#: Hidden units of each of the "mlp" head's two hidden layers at width 1 (scaled by ``width`` like the
#: convolutional blocks; torchvision's VGG: 4,096 at 224×224).
MLP_HIDDEN = 512


class SimpleCNN(nn.Module):
    """``features``: conv-BN-ReLU blocks, each stage but the last followed by 2×2 max-pooling."""

    def __init__(self, num_classes: int, channels: Sequence[int], width: float, head: str = "linear"):
        super().__init__()
        self.normalize = Normalize()
        layers: list[nn.Module] = []
        cin = 3
        for i, c in enumerate(channels):
            cout = scaled(c, width)
            layers.append(ConvBNReLU(cin, cout))
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        if head not in HEADS:
            raise ConfigError(f"head must be one of {list(HEADS)}, got {head!r}")
        self.classifier = (
            Classifier(cin, num_classes)
            if head == "linear"
            else MLPClassifier(cin, num_classes, hidden=scaled(MLP_HIDDEN, width))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@register_architecture("cnn", summary="plain 4-block CNN")
def cnn(
    num_classes: int,
    *,
    width: float = 1.0,
    channels: tuple[int, ...] = (32, 64, 128, 128),
    head: str = "linear",
) -> SimpleCNN:
    """Plain CNN with one conv block per entry of ``channels`` (scaled by ``width``) and a ``head`` from
    :data:`HEADS`; ``head="mlp"`` is VGG-like (the classes form after the last convolutional block)."""
    return SimpleCNN(num_classes, tuple(channels), width, head)
