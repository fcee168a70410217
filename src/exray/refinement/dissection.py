"""Baseline 6 of the paper's Table 1: Network-Dissection-style important neurons (NE; EXP §4.1, spec §4.7.6).

Network Dissection (Bau et al.) calls a channel a detector of a concept when its strongest activations
overlap the concept's region. Here the concept is the trigger: the region of a stamped victim image that
the trigger changed. [CHOICE] spec §4.7.6:

* each channel's threshold is its 99.5% activation quantile over the stamped victim images (every image
  and position at layer L);
* its maps are upsampled (bilinear) to the input size and binarised at that threshold (a channel counts
  as active only above its lowest value, so a constant, e.g. dead, channel is active nowhere);
* IoU with the trigger region = Σ|A ∩ R| / Σ|A ∪ R| over the images;
* the ⌈10%⌉ channels with the highest IoU are the trigger's neurons, and the score is the L2 distance
  between the average normalised features of V+t and T on them (as the other baselines).

Filter triggers change the whole image and have no region: the method does not apply to them (the
paper's blank NE cells), nor to a trigger whose stamped images are not paired with the victim images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from exray.differencing import TriggerCase
from exray.errors import ConfigError
from exray.models.layers import LayerCut
from exray.refinement.base import RefinementMethod, TriggerScore
from exray.refinement.features import FeatureSets, layer_cut, normalised_distance, top_channels

#: a pixel belongs to the trigger region when stamping changed one of its channels by more than this
REGION_TOLERANCE = 1e-3


def trigger_region(victim: torch.Tensor, stamped: torch.Tensor) -> torch.Tensor:
    """(N, H, W) booleans: where stamping changed each victim image (images paired row for row)."""
    return (stamped - victim).abs().amax(1) > REGION_TOLERANCE


def channel_iou(features: torch.Tensor, region: torch.Tensor, quantile: float) -> torch.Tensor:
    """(C,) IoU of each channel's top-activation area with ``region`` over all images (Network Dissection)."""
    c = features.shape[1]
    per_channel = features.transpose(0, 1).reshape(c, -1)
    thresholds = torch.quantile(per_channel.float(), quantile, dim=1).view(1, c, 1, 1)
    floors = per_channel.float().amin(1).view(1, c, 1, 1)
    maps = F.interpolate(features.float(), size=region.shape[-2:], mode="bilinear", align_corners=False)
    # a channel is never active at its floor value (a dead channel nowhere)
    active = (maps >= thresholds) & (maps > floors)
    inside = region[:, None].to(maps.device)
    intersection = (active & inside).sum((0, 2, 3)).float()
    union = (active | inside).sum((0, 2, 3)).float()
    return intersection / union.clamp(min=1)


class NetworkDissectionMethod(RefinementMethod):
    """Baseline 6 (patch triggers only): channels whose top activations cover the trigger; L2 of V+t vs T on
    them. ``quantile``: the activation quantile that binarises a channel; ``top_fraction``: channels kept."""

    name = "ne"
    title = "NE"
    kinds = frozenset({"patch"})

    def __init__(self, *, quantile: float = 0.995, top_fraction: float = 0.1):
        super().__init__()
        if not 0.0 < quantile < 1.0:
            raise ConfigError(f"quantile must be in (0, 1), got {quantile!r}")
        if not 0.0 < top_fraction <= 1.0:
            raise ConfigError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
        self.quantile = quantile
        self.top_fraction = top_fraction

    def options(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "top_fraction": self.top_fraction}

    def _score(
        self, model: nn.Module, cases: list[TriggerCase], *, layer: str | None, seed: int, progress: bool
    ) -> list[TriggerScore]:
        cut: LayerCut = layer_cut(model, layer, cases[0].victim)
        sets = FeatureSets(cut)
        scores = []
        for case in cases:
            if len(case.stamped) != len(case.victim):
                scores.append(TriggerScore(None, note="stamped images are not paired with the victim images"))
                continue
            region = trigger_region(case.victim, case.stamped)
            if not region.any():
                scores.append(TriggerScore(None, note="the trigger changes no pixel: no region to dissect"))
                continue
            stamped = sets(case.stamped, "stamped images")
            if stamped.features.ndim != 4:
                scores.append(TriggerScore(None, note=f"layer {cut.layer!r} has no spatial feature maps"))
                continue
            target = sets(case.target, "target images")
            iou = channel_iou(stamped.features, region, self.quantile)
            channels = sorted(top_channels(iou, self.top_fraction).tolist())
            value = normalised_distance(stamped.channel_means, target.channel_means, channels)
            details = {
                "layer": cut.layer,
                "channels": channels,
                "iou": [round(float(iou[c]), 6) for c in channels],
                "region_pixels": float(region.flatten(1).sum(1).float().mean()),
            }
            scores.append(TriggerScore(value, details))
        return scores
