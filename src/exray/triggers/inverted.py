"""Triggers recovered by trigger inversion (spec §2.6, §2.7, §3.1): a mask + pattern and a colour filter map.

* :class:`MaskPatternTrigger`: x' = m·p + (1 − m)·x with an H×W mask m in [0, 1] and a pattern p that is
  either one solid colour (ABS, spec §2.6) or a full 3×H×W image (Neural Cleanse, spec §3.1). With
  ``threshold`` set, ``apply`` binarises the mask first (ABS validation pastes the colour where m > 0.1,
  spec §2.9 / §4.9.7); without it the soft mask is used (Neural Cleanse).
* :class:`FilterMapTrigger`: ABS's learned one-layer colour transform. Each pixel gets 12 features — per
  RGB channel its value and the max, min and mean over a k×k neighbourhood — and the output colour is
  clamp(features · W) with one 12×3 matrix W for the whole image (spec §2.7).

Both serialise to JSON; tensors are stored as base64 float32 so a round trip is exact.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from exray.errors import ConfigError, InputError
from exray.triggers.base import Trigger, check_config, register_trigger

#: Pixels whose binarised mask value exceeds this count towards a trigger's size (spec §4.9.7: m² > 0.01).
MASK_THRESHOLD = 0.1


def encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    """A JSON-able, exact encoding of a float tensor: shape plus base64 little-endian float32 bytes."""
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4")
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}


def decode_tensor(value: Any, what: str) -> torch.Tensor:
    """Inverse of :func:`encode_tensor` (ConfigError for anything malformed)."""
    if not isinstance(value, Mapping) or set(value) != {"shape", "data"}:
        raise ConfigError(f"{what} must be an encoded tensor {{'shape', 'data'}}, got {value!r:.80}")
    try:
        shape = tuple(int(v) for v in value["shape"])
        raw = base64.b64decode(value["data"], validate=True)
        array = np.frombuffer(raw, dtype="<f4").reshape(shape)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} is not a valid encoded tensor: {err}") from None
    return torch.from_numpy(array.astype(np.float32))


def _check_range(tensor: torch.Tensor, what: str) -> None:
    if not torch.isfinite(tensor).all() or tensor.min() < 0.0 or tensor.max() > 1.0:
        raise ConfigError(f"{what} must hold finite values in [0, 1]")


@register_trigger
class MaskPatternTrigger(Trigger):
    """x' = m·p + (1 − m)·x for an (H, W) mask and a (3, 1, 1) solid or (3, H, W) full pattern.

    ``threshold``: if set, the mask is binarised as m > threshold when stamping (ABS); ``None`` stamps
    with the soft mask (Neural Cleanse). Images must have the mask's H×W.
    """

    type: ClassVar[str] = "mask_pattern"

    def __init__(self, mask: torch.Tensor, pattern: torch.Tensor, threshold: float | None = MASK_THRESHOLD):
        mask = torch.as_tensor(mask, dtype=torch.float32).detach().cpu()
        pattern = torch.as_tensor(pattern, dtype=torch.float32).detach().cpu()
        if mask.ndim != 2:
            raise ConfigError(f"mask must have shape (H, W), got {tuple(mask.shape)}")
        if pattern.shape not in ((3, 1, 1), (3, *mask.shape)):
            raise ConfigError(
                f"pattern must have shape (3, 1, 1) or (3, {mask.shape[0]}, {mask.shape[1]}), "
                f"got {tuple(pattern.shape)}"
            )
        _check_range(mask, "mask")
        _check_range(pattern, "pattern")
        if threshold is not None and not 0.0 <= threshold < 1.0:
            raise ConfigError(f"threshold must be None or in [0, 1), got {threshold}")
        self.mask = mask
        self.pattern = pattern
        self.threshold = None if threshold is None else float(threshold)

    @property
    def solid(self) -> bool:
        """Whether the pattern is one colour (ABS) rather than a full image."""
        return self.pattern.shape[1:] == (1, 1)

    def effective_mask(self) -> torch.Tensor:
        """The (H, W) mask ``apply`` uses: binarised if ``threshold`` is set."""
        if self.threshold is None:
            return self.mask.clone()
        return (self.mask > self.threshold).float()

    @property
    def size(self) -> int:
        """Pixels of the binarised mask: m > 0.1 (spec §4.9.7), whatever ``threshold`` is."""
        return int((self.mask > MASK_THRESHOLD).sum())

    @property
    def l1_norm(self) -> float:
        """Σ m of the soft mask (Neural Cleanse's norm, spec §3.2)."""
        return float(self.mask.sum())

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        if tuple(images.shape[-2:]) != tuple(self.mask.shape):
            raise InputError(
                f"this trigger's mask is {tuple(self.mask.shape)}; images are {tuple(images.shape[-2:])}"
            )
        mask = self.effective_mask().to(images.device, images.dtype)[None, None]
        pattern = self.pattern.to(images.device, images.dtype)[None]
        return mask * pattern + (1.0 - mask) * images

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "mask": encode_tensor(self.mask),
            "pattern": encode_tensor(self.pattern),
            "threshold": self.threshold,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MaskPatternTrigger:
        check_config(config, cls, {"mask", "pattern", "threshold"})
        threshold = config["threshold"]
        return cls(
            decode_tensor(config["mask"], "mask"),
            decode_tensor(config["pattern"], "pattern"),
            None if threshold is None else float(threshold),
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MaskPatternTrigger)
            and self.threshold == other.threshold
            and torch.equal(self.mask, other.mask)
            and torch.equal(self.pattern, other.pattern)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "solid" if self.solid else "full"
        return f"MaskPatternTrigger({tuple(self.mask.shape)}, {kind} pattern, size={self.size})"


def default_filter_window(height: int, width: int) -> int:
    """The neighbourhood side scaled from the official 111 at 224 px: 2·⌊(111/448)·min(H, W)⌋ + 1.

    Odd, about half the image side: 111 at 224², 15 at 32², 7 at 16².
    """
    return 2 * int(111 / 448 * min(height, width)) + 1


def filter_features(images: torch.Tensor, window: int, *, official_min: bool = False) -> torch.Tensor:
    """The 12 per-pixel features of ABS filter triggers (spec §2.7), shape (N, 12, H, W).

    Order: the 3 pixel values, then the 3 local maxima, the 3 local minima and the 3 local means over a
    ``window``×``window`` neighbourhood (stride 1, 'same' size; the mean counts only pixels inside the
    image). ``official_min=True`` reproduces the official script's quirk of using −max as the "min".
    """
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"filter window must be a positive odd integer, got {window}")
    pad = window // 2
    local_max = F.max_pool2d(images, window, stride=1, padding=pad) if pad else images
    if official_min:
        local_min = -local_max
    else:
        local_min = -F.max_pool2d(-images, window, stride=1, padding=pad) if pad else images
    local_mean = (
        F.avg_pool2d(images, window, stride=1, padding=pad, count_include_pad=False) if pad else images
    )
    return torch.cat([images, local_max, local_min, local_mean], dim=1)


def apply_filter_map(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """clamp(features · W, 0, 1): (N, 12, H, W) features and (12, 3) or per-row (N, 12, 3) weights."""
    if weights.ndim == 2:
        out = torch.einsum("nfhw,fc->nchw", features, weights)
    else:
        out = torch.einsum("nfhw,nfc->nchw", features, weights)
    return out.clamp(0.0, 1.0)


@register_trigger
class FilterMapTrigger(Trigger):
    """ABS's learned colour filter: x' = clamp(features_k(x) · W) with a (12, 3) weight matrix W.

    ``window``: the neighbourhood side k of the local max/min/mean features (odd). ``official_min``: use
    the official script's −max "min" feature (spec §2.7 quirk).
    """

    type: ClassVar[str] = "filter_map"

    def __init__(self, weights: torch.Tensor, window: int, official_min: bool = False):
        weights = torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
        if weights.shape != (12, 3):
            raise ConfigError(f"filter weights must have shape (12, 3), got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all():
            raise ConfigError("filter weights must be finite")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ConfigError(f"filter window must be a positive odd integer, got {window!r}")
        self.weights = weights
        self.window = window
        self.official_min = bool(official_min)

    def _stamp(
        self,
        images: torch.Tensor,
        *,
        foreground: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        features = filter_features(images, self.window, official_min=self.official_min)
        return apply_filter_map(features, self.weights.to(images.device, images.dtype))

    def to_config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "weights": encode_tensor(self.weights),
            "window": self.window,
            "official_min": self.official_min,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FilterMapTrigger:
        check_config(config, cls, {"weights", "window", "official_min"})
        window = config["window"]
        if isinstance(window, bool) or not isinstance(window, int):
            raise ConfigError(f"filter window must be an integer, got {window!r}")
        return cls(decode_tensor(config["weights"], "weights"), window, bool(config["official_min"]))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FilterMapTrigger)
            and self.window == other.window
            and self.official_min == other.official_min
            and torch.equal(self.weights, other.weights)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FilterMapTrigger(window={self.window}, official_min={self.official_min})"
