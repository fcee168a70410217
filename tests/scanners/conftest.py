"""Hand-wired models with known backdoors for the scanner tests (no training needed).

* :func:`area_net`: colour detectors (1×1 conv + ReLU) → *average* pooling → linear head, so a class's
  evidence grows with the area of its colour: flipping a class naturally takes a large patch, while a
  planted detector with a big weight needs only a few pixels.
* :class:`WarmthNet`: the same colour detectors plus a "warm tint" channel ReLU(R − B − 0.15) averaged over
  the image; a large weight ties it to one class, so a whole-image colour filter is the natural backdoor
  and a small patch cannot reach it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exray.models.analytic import CHANNEL, COLOURS, ColourDetectorNet, symbol_images


def pytest_configure(config: pytest.Config) -> None:
    # test_abs_tiny_zoo shares the cached tiny zoo with tests/zoo; without xdist nobody registers the marker
    config.addinivalue_line("markers", "xdist_group(name): run the marked tests on one xdist worker")


SYMBOLS = ("red", "green", "blue", "yellow", "cyan", "white")
#: Symbol colours with R ≤ B, so clean images never look "warm" to :class:`WarmthNet`.
COOL = ("green", "blue", "cyan", "white")


def area_net(
    weights: list[float], bias: list[float], trojan: tuple[str, int, float] | None = None, slack: float = 1.0
) -> nn.Module:
    """Class c's logit ≈ weights[c] × (fraction of the image showing SYMBOLS[c]) + bias[c]; ``trojan`` =
    (colour, target, weight) adds a planted detector. ``slack`` raises every detector's bias so that it
    responds (linearly) to colours near its corner, not only to the exact colour — grey stays off — which
    gives trigger inversion a gradient to follow from a random start."""
    votes = [{SYMBOLS[c]: w} for c, w in enumerate(weights)]
    net = ColourDetectorNet(votes, bias)
    net.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        net.detectors[0].bias += slack
    if trojan is not None:
        colour, target, weight = trojan
        with torch.no_grad():
            net.head.weight[target, CHANNEL[colour]] = weight
    return net


def symbol_examples(n: int, classes: int, size: int = 16, seed: int = 0) -> dict[int, torch.Tensor]:
    return {c: symbol_images(SYMBOLS[c], n, size=size, seed=seed + c) for c in range(classes)}


class WarmthNet(nn.Module):
    """Colour detectors (max-pooled, weight 2 for each class's symbol colour) + a warm-tint channel
    (average-pooled) that votes for class ``target`` with weight ``warmth``."""

    def __init__(self, classes: int, target: int, warmth: float = 40.0):
        super().__init__()
        base = ColourDetectorNet([{COOL[c]: 2.0} for c in range(classes)])
        conv = nn.Conv2d(3, len(COLOURS) + 1, 1)
        with torch.no_grad():
            conv.weight[: len(COLOURS)] = base.detectors[0].weight
            conv.bias[: len(COLOURS)] = base.detectors[0].bias
            conv.weight[-1, :, 0, 0] = torch.tensor([1.0, 0.0, -1.0])
            conv.bias[-1] = -0.15
        self.detectors = nn.Sequential(conv, nn.ReLU())
        self.head = nn.Linear(len(COLOURS) + 1, classes)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[:, : len(COLOURS)] = base.head.weight
            self.head.weight[target, -1] = warmth
            self.head.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.detectors(x)
        pooled = torch.cat([z[:, :-1].amax((2, 3)), z[:, -1:].mean((2, 3))], dim=1)
        return self.head(pooled)


def textured(colour: str, n: int, size: int, seed: int) -> torch.Tensor:
    """Symbol images on a textured grey background (smooth random blobs), so MS-SSIM has structure."""
    gen = torch.Generator().manual_seed(seed)
    images = symbol_images(colour, n, size=size, seed=seed, noise=0.0)
    blobs = torch.nn.functional.interpolate(
        torch.rand(n, 1, size // 4, size // 4, generator=gen), size=size, mode="bilinear"
    )
    return (images + 0.3 * (blobs - 0.5)).clamp(0, 1)


@pytest.fixture(scope="session")
def planted_patch():
    """Colour detectors with a magenta detector planted for class 1 (tests/differencing's model)."""
    net = ColourDetectorNet(
        [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}, {"yellow": 2}], bias=[0, 0.1, 0.05, 0.05]
    )
    return net, symbol_examples(10, 4)


@pytest.fixture(scope="session")
def warm_model():
    """A :class:`WarmthNet` whose tint channel votes for class 3, with textured cool-symbol examples."""
    net = WarmthNet(4, target=3)
    return net, {c: textured(COOL[c], 8, 32, seed=c) for c in range(4)}


@pytest.fixture(scope="session")
def area_models():
    """A clean :func:`area_net` with six classes and the same net with a magenta detector planted for class
    2 (weight 200: a few pixels flip any image), and 16×16 symbol examples."""
    weights, bias = [20.0] * 6, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    clean = area_net(weights, bias)
    trojaned = area_net(weights, bias, trojan=("magenta", 2, 200.0))
    return clean, trojaned, symbol_examples(10, 6)
