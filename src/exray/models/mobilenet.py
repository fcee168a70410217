"""CIFAR-scale MobileNetV2 (Sandler et al. 2018): inverted residual blocks, width multiplier."""

from __future__ import annotations

import torch
from torch import nn

from exray.models.blocks import Classifier, ConvBNReLU, Normalize, scaled
from exray.models.registry import register_architecture

# (expansion t, output channels c, repeats n, first stride s); CIFAR variant: stride 1 in the stem and
# in the second stage, so a 32×32 input ends at 4×4.
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """1×1 expansion → 3×3 depthwise → 1×1 linear projection, with a residual add when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """Stem → seven stages of inverted residuals → 1×1 head → pooling → linear."""

    def __init__(self, num_classes: int, width: float):
        super().__init__()
        self.normalize = Normalize()
        cin = scaled(32, width)
        stages: list[tuple[str, nn.Module]] = [("stem", ConvBNReLU(3, cin))]
        for i, (t, c, n, s) in enumerate(_SETTINGS):
            cout = scaled(c, width)
            blocks = [
                InvertedResidual(cin if j == 0 else cout, cout, s if j == 0 else 1, t) for j in range(n)
            ]
            stages.append((f"stage{i + 1}", nn.Sequential(*blocks)))
            cin = cout
        head = scaled(1280, width, minimum=32)
        stages.append(("head", ConvBNReLU(cin, head, kernel=1)))
        self.features = nn.Sequential()
        for name, module in stages:
            self.features.add_module(name, module)
        self.classifier = Classifier(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@register_architecture("mobilenetv2", summary="CIFAR MobileNetV2 (inverted residuals)")
def mobilenetv2(num_classes: int, *, width: float = 1.0) -> MobileNetV2:
    """CIFAR MobileNetV2; ``width`` is the usual width multiplier."""
    return MobileNetV2(num_classes, width)
