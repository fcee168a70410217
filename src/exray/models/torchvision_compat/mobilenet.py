"""torchvision's MobileNetV2 (Sandler et al. 2018; torchvision.models.mobilenet / mobilenetv2), written for
exray with the same module names and state-dict keys (:mod:`exray.models.torchvision_compat`). The convolution
blocks are ``nn.Sequential`` subclasses, so pickles of every torchvision release load: ``ConvBNReLU``
(≤ 0.8), ``ConvBNActivation`` (0.9–0.10), ``ops.misc.ConvNormActivation`` / ``Conv2dNormActivation``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` to ``value``, not below 90 % of it (torchvision's rounding)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU(nn.Sequential):
    """Convolution (same padding), batch norm, ReLU6."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = cout


class InvertedResidual(nn.Module):
    """Expand (1×1), depthwise 3×3 (the stride), project (1×1, linear); a residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        self.stride = stride
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [] if expand_ratio == 1 else [ConvBNReLU(inp, hidden, kernel_size=1)]
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


#: (expansion t, channels c, repeats n, first stride s) per stage.
SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """``features`` (a stride-2 stem, 17 inverted residuals, a 1×1 to 1,280), pooling, ``classifier``."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()
        channels = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU(3, channels, stride=2)]
        for t, c, n, s in SETTING:
            out = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(ConvBNReLU(channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mobilenet_v2": MobileNetV2}
CLASSES: dict[str, type[nn.Module]] = {
    f"torchvision.{path}": cls
    for cls, paths in (
        (MobileNetV2, ("models.mobilenet.MobileNetV2", "models.mobilenetv2.MobileNetV2")),
        (InvertedResidual, ("models.mobilenet.InvertedResidual", "models.mobilenetv2.InvertedResidual")),
        (
            ConvBNReLU,
            (
                "models.mobilenet.ConvBNReLU",
                "models.mobilenetv2.ConvBNReLU",
                "models.mobilenetv2._DeprecatedConvBNAct",
                "models.mobilenetv2.ConvBNActivation",
                "ops.misc.ConvNormActivation",
                "ops.misc.Conv2dNormActivation",
            ),
        ),
    )
    for path in paths
}
