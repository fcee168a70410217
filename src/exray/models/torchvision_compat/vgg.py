"""torchvision's VGG with batch normalisation (Simonyan and Zisserman 2015; torchvision.models.vgg), written
for exray with the same module names and state-dict keys (:mod:`exray.models.torchvision_compat`):
VGG-11/13/16/19-BN."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

#: Convolution widths per configuration; "M" is a 2×2 max pooling.
CONFIGS: dict[str, Sequence[int | str]] = {
    "vgg11_bn": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13_bn": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16_bn": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19_bn": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


class VGG(nn.Module):
    """``features`` (conv-BN-ReLU and max pooling), a 7×7 adaptive pooling, ``classifier`` (two hidden
    layers of 4,096 with dropout). Pickles of torchvision releases before the pooling existed load too:
    without an ``avgpool`` the features go to the classifier as they are (224-pixel inputs give 7×7)."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        pool = self.__dict__["_modules"].get("avgpool")
        if pool is not None:
            x = pool(x)
        return self.classifier(torch.flatten(x, 1))


def make_features(config: Sequence[int | str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for value in config:
        if value == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [
                nn.Conv2d(channels, int(value), 3, padding=1),
                nn.BatchNorm2d(int(value)),
                nn.ReLU(True),
            ]
            channels = int(value)
    return nn.Sequential(*layers)


def _builder(name: str) -> Callable[..., VGG]:
    def build(num_classes: int = 1000) -> VGG:
        return VGG(make_features(CONFIGS[name]), num_classes)

    return build


BUILDERS: dict[str, Callable[..., nn.Module]] = {name: _builder(name) for name in CONFIGS}
CLASSES: dict[str, type[nn.Module]] = {"torchvision.models.vgg.VGG": VGG}
