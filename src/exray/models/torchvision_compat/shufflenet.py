"""torchvision's ShuffleNetV2 ×0.5/1.0/1.5/2.0 (Ma et al. 2018; torchvision.models.shufflenetv2), written for
exray with the same module names and state-dict keys (:mod:`exray.models.torchvision_compat`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """Stride 1: half the channels pass, half go through ``branch2``; stride 2: both branches downsample.
    The halves are concatenated and shuffled."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        half = oup // 2
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, half, 1, 1, 0, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else half, half, 1, 1, 0, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _depthwise(half, stride),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, 1, 0, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """``conv1``, ``maxpool``, ``stage2``–``stage4``, ``conv5``, global average pooling, ``fc``."""

    def __init__(
        self, stages_repeats: Sequence[int], stages_out_channels: Sequence[int], num_classes: int = 1000
    ):
        super().__init__()
        self._stage_out_channels = list(stages_out_channels)
        channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for name, repeats, out in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:]
        ):
            blocks = [InvertedResidual(channels, out, 2)] + [
                InvertedResidual(out, out, 1) for _ in range(repeats - 1)
            ]
            setattr(self, name, nn.Sequential(*blocks))
            channels = out
        last = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(channels, last, 1, 1, 0, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean([2, 3]))


_WIDTHS = {
    "shufflenet_v2_x0_5": (24, 48, 96, 192, 1024),
    "shufflenet_v2_x1_0": (24, 116, 232, 464, 1024),
    "shufflenet_v2_x1_5": (24, 176, 352, 704, 1024),
    "shufflenet_v2_x2_0": (24, 244, 488, 976, 2048),
}


def _builder(widths: Sequence[int]) -> Callable[..., ShuffleNetV2]:
    def build(num_classes: int = 1000) -> ShuffleNetV2:
        return ShuffleNetV2((4, 8, 4), widths, num_classes)

    return build


BUILDERS: dict[str, Callable[..., nn.Module]] = {name: _builder(w) for name, w in _WIDTHS.items()}
CLASSES: dict[str, type[nn.Module]] = {
    "torchvision.models.shufflenetv2.ShuffleNetV2": ShuffleNetV2,
    "torchvision.models.shufflenetv2.InvertedResidual": InvertedResidual,
}
