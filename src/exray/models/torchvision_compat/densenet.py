"""torchvision's DenseNet-121/161/169/201 (Huang et al. 2017; torchvision.models.densenet), written for exray
with the same module names and state-dict keys (:mod:`exray.models.torchvision_compat`).

torchvision changed the blocks' Python types over its releases (a dense layer was an ``nn.Sequential``, then
an ``nn.Module`` taking a list; a dense block an ``nn.Sequential``, then an ``nn.ModuleDict``) but never
their children's names: these classes compute from the children alone, so a pickle of any release loads
into them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv (to ``bn_size`` × growth) then BN-ReLU-3×3 conv (to growth); returns the new maps."""

    def __init__(self, cin: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(list(x), 1) if not isinstance(x, torch.Tensor) else x
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        return F.dropout(out, p=self.drop_rate, training=self.training) if self.drop_rate > 0 else out


class _DenseBlock(nn.ModuleDict):
    """``denselayerK`` children; each sees the concatenation of the block's input and every earlier output."""

    def __init__(self, num_layers: int, cin: int, bn_size: int, growth_rate: int, drop_rate: float):
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"denselayer{i + 1}", _DenseLayer(cin + i * growth_rate, growth_rate, bn_size, drop_rate)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self._modules.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-1×1 conv and 2×2 average pooling between blocks."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    """``features`` (7×7 stem, max pooling, four dense blocks with transitions, ``norm5``), ReLU, global
    average pooling, ``classifier``."""

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(
                f"denseblock{i + 1}", _DenseBlock(num_layers, channels, bn_size, growth_rate, drop_rate)
            )
            channels += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def _builder(growth: int, blocks: Sequence[int], init: int) -> Callable[..., DenseNet]:
    def build(num_classes: int = 1000) -> DenseNet:
        return DenseNet(growth, blocks, init, num_classes=num_classes)

    return build


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "densenet121": _builder(32, (6, 12, 24, 16), 64),
    "densenet161": _builder(48, (6, 12, 36, 24), 96),
    "densenet169": _builder(32, (6, 12, 32, 32), 64),
    "densenet201": _builder(32, (6, 12, 48, 32), 64),
}
CLASSES: dict[str, type[nn.Module]] = {
    "torchvision.models.densenet.DenseNet": DenseNet,
    "torchvision.models.densenet._DenseLayer": _DenseLayer,
    "torchvision.models.densenet._DenseBlock": _DenseBlock,
    "torchvision.models.densenet._Transition": _Transition,
}
