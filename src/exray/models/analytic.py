"""Hand-wired colour-detector networks whose differential features are known by construction.

Used by the tests and the built-in demonstration: when every feature map has a meaning ("this image
contains red"), the masks EX-RAY must find can be stated in advance.

* ``detectors``: a fixed 1×1 convolution + ReLU with one channel per corner of the RGB cube
  (:data:`COLOURS`); a channel outputs ≈1 where a pixel has exactly its colour and 0 on the mid-grey
  background or any other corner colour.
* ``pool``: global max pooling (did the colour appear anywhere?), then ``head``: a linear layer whose
  weights say which colours vote for which class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from exray.errors import ConfigError
from exray.models.registry import build_model, register_architecture

COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0, 0, 0),
    "blue": (0, 0, 1),
    "green": (0, 1, 0),
    "cyan": (0, 1, 1),
    "red": (1, 0, 0),
    "magenta": (1, 0, 1),
    "yellow": (1, 1, 0),
    "white": (1, 1, 1),
}
CHANNEL = {name: i for i, name in enumerate(COLOURS)}


class ColourDetectorNet(nn.Module):
    """detectors (1×1 conv + ReLU) → global max pool → linear head with the given weights.

    ``votes[c]`` maps colour names to the weight they add to class ``c``'s logit; ``bias[c]`` is the
    class's constant logit.
    """

    def __init__(self, votes: Sequence[Mapping[str, float]], bias: Sequence[float] | None = None):
        super().__init__()
        unknown = {name for colour_votes in votes for name in colour_votes} - set(COLOURS)
        if unknown:
            raise ConfigError(f"unknown colours {sorted(unknown)}; choose from {list(COLOURS)}")
        conv = nn.Conv2d(3, len(COLOURS), 1)
        with torch.no_grad():
            for i, colour in enumerate(COLOURS.values()):
                signs = torch.tensor(colour) * 2 - 1  # +1 where the colour has the channel on, −1 where off
                conv.weight[i, :, 0, 0] = 2 * signs
                conv.bias[i] = -2 - signs.sum()  # ≈ 1 on the exact colour, ≤ −1 one channel away
        self.detectors = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(len(COLOURS), len(votes))
        with torch.no_grad():
            self.head.weight.zero_()
            for c, colour_votes in enumerate(votes):
                for name, weight in colour_votes.items():
                    self.head.weight[c, CHANNEL[name]] = weight
            self.head.bias.copy_(torch.tensor(bias if bias is not None else [0.0] * len(votes)))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.detectors(x)))


@register_architecture("colour_detectors", summary="hand-wired colour-detector network", analytic=True)
def colour_detectors(
    num_classes: int, *, votes: Sequence[Mapping[str, float]] = (), bias: Sequence[float] | None = None
) -> ColourDetectorNet:
    """:class:`ColourDetectorNet` with one ``votes`` mapping per class."""
    if len(votes) != num_classes or (bias is not None and len(bias) != num_classes):
        raise ConfigError(f"colour_detectors needs one votes mapping (and bias) per class ({num_classes})")
    return ColourDetectorNet(votes, bias)


def symbol_images(
    colour: str,
    n: int,
    *,
    size: int = 12,
    seed: int = 0,
    patch: str | None = None,
    cover: bool = False,
    noise: float = 0.02,
) -> torch.Tensor:
    """``n`` grey images with a centred square symbol of ``colour``, in [0, 1].

    ``patch``: also stamp a 2×2 square of that colour in a random corner region (a trigger).
    ``cover``: paint the symbol over with background grey (a trigger that *suppresses* the class's feature).
    """
    gen = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 0.5)
    lo, hi = size // 3, size - size // 3
    if not cover:
        images[:, :, lo:hi, lo:hi] = torch.tensor(COLOURS[colour]).view(1, 3, 1, 1)
    if patch is not None:
        for i in range(n):
            r, c = (int(v) for v in torch.randint(0, lo - 2, (2,), generator=gen))
            images[i, :, r : r + 2, c : c + 2] = torch.tensor(COLOURS[patch]).view(3, 1, 1)
    images += noise * torch.randn(images.shape, generator=gen)
    return images.clamp(0, 1)


@dataclass(frozen=True)
class Demonstration:
    """EX-RAY's premise on a model whose answer is known (``exray demo --analytic``, paper Fig. 1): red
    images of class 0 (victim) and green images of class 1 (target), and two triggers that flip 0 to 1 —
    ``natural[name]`` says which verdict is right for each."""

    model: nn.Module
    victim: torch.Tensor
    target: torch.Tensor
    stamped: dict[str, torch.Tensor]
    natural: dict[str, bool]


def demonstration() -> Demonstration:
    """A three-class colour-detector model with a planted magenta detector wired to class 1: a magenta
    patch is an injected trigger, a green patch (class 1's own feature) a natural one."""
    votes = [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}]
    model = build_model("colour_detectors", 3, votes=votes, bias=[0, 0.1, 0.05])
    injected, natural = "injected (magenta patch, planted)", "natural (green patch, class 1's own feature)"
    return Demonstration(
        model=model,
        victim=symbol_images("red", 10, seed=1),
        target=symbol_images("green", 10, seed=2),
        stamped={
            injected: symbol_images("red", 10, seed=1, patch="magenta"),
            natural: symbol_images("red", 10, seed=1, patch="green"),
        },
        natural={injected: False, natural: True},
    )
