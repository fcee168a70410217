"""Inner-layer statistics shared by the distance and attribution baselines (spec §4.7, baselines 1–6).

Every baseline works at the EX-RAY layer L (default: the output of the second-to-last convolutional
block, spec §1) and compares the *average normalised feature maps* of two image sets (the paper's Fig. 6:
"average value of a feature map after normalization"): each image's channel is reduced to its spatial
mean; each channel is divided by its largest absolute value over the union of both sets' images
([CHOICE] spec §4.7.1); the two sets' means are compared with an L2 distance, optionally on a subset of
channels (the attribution baselines' important neurons).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from exray.differencing.masks import extract, make_cut
from exray.models.layers import LayerCut
from exray.models.runtime import model_device


@dataclass
class SetFeatures:
    """An image set at layer L: the images (on the model's device), their features and logits."""

    images: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor

    @property
    def channel_means(self) -> torch.Tensor:
        """(N, C): each image's channels averaged over space."""
        return spatial_means(self.features)


def layer_cut(model: nn.Module, layer: str | None, sample: torch.Tensor) -> LayerCut:
    """The model split at ``layer`` (default: the EX-RAY default layer, found with ``sample``)."""
    return make_cut(model, layer, sample)


def set_features(cut: LayerCut, images: torch.Tensor, name: str) -> SetFeatures:
    """Features and logits of ``images`` at ``cut``."""
    feats, logits = extract(cut, images, name)
    return SetFeatures(images.to(model_device(cut.model)), feats, logits)


def spatial_means(features: torch.Tensor) -> torch.Tensor:
    """(N, C) channel means over every dimension after the channel one (a no-op on (N, C) features)."""
    return features.flatten(2).mean(2) if features.ndim > 2 else features


def normalised_distance(
    a: torch.Tensor, b: torch.Tensor, channels: Sequence[int] | torch.Tensor | None = None
) -> float:
    """L2 distance between the mean normalised channel vectors of two sets of (N, C) channel means.

    Each channel is scaled by its largest absolute value over the rows of ``a`` and ``b`` together (a
    channel that is zero everywhere stays zero); ``channels`` restricts the distance to those channels.
    """
    scale = torch.cat([a, b]).abs().amax(0).clamp(min=1e-12)
    difference = (a / scale).mean(0) - (b / scale).mean(0)
    if channels is not None:
        difference = difference[torch.as_tensor(channels, dtype=torch.long, device=difference.device)]
    return float(torch.linalg.vector_norm(difference))


def top_channels(importance: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ⌈fraction·C⌉ (at least one) most important channels, most important first."""
    k = max(1, math.ceil(fraction * importance.numel() - 1e-9))  # 0.1·30 is 3.0000000000000004
    return torch.topk(importance, k).indices


class FeatureSets:
    """Features of the image sets seen in one call, computed once per tensor (the cases of one model share
    their clean example tensors)."""

    def __init__(self, cut: LayerCut):
        self.cut = cut
        self._seen: dict[int, tuple[torch.Tensor, SetFeatures]] = {}

    def __call__(self, images: torch.Tensor, name: str) -> SetFeatures:
        key = id(images)
        if key not in self._seen:
            # holding the images keeps their id from being reused within the call
            self._seen[key] = (images, set_features(self.cut, images, name))
        return self._seen[key][1]
