"""Training hyper-parameters (:class:`TrainConfig`, validated) and what they build: the optimiser, the
per-step learning-rate schedule and the batch augmentation of :func:`exray.train.train_model`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from exray.errors import ConfigError
from exray.models.runtime import check_bf16
from exray.train.adversarial import AdversarialConfig

Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["onecycle", "cosine", "constant", "multistep"]
Augment = Literal["none", "crop", "crop_flip"]

#: Fields added after the first zoos were built: ``to_dict`` leaves them out at their defaults, so that the
#: cache keys of every earlier spec stay what they were.
_LATER_FIELDS: Mapping[str, Any] = {
    "nesterov": True,
    "milestones": (0.5, 0.75),
    "gamma": 0.1,
    "augment": "none",
    "crop_padding": 4,
}


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (validated).

    ``optimizer`` "adamw" or "sgd" (momentum 0.9, Nesterov unless ``nesterov`` is false); ``schedule``
    "onecycle" (linear warm-up to ``lr`` over the first quarter of the steps, then cosine annealing to
    zero), "cosine", "constant" or "multistep" (``lr`` times ``gamma`` at each of the ``milestones``, given
    as fractions of the epochs: the SDRM reference's 80 epochs decayed at 40 and 60 are (0.5, 0.75));
    ``augment`` "crop" (a random crop of the image zero-padded by ``crop_padding`` pixels) or "crop_flip"
    (and a random horizontal flip), drawn per sample and epoch, applied after poisoning as the reference
    code does; ``channels_last``/``bf16`` select the fast CPU path (``bf16="auto"``: bf16 autocast where
    the device computes bf16 natively, :func:`exray.models.runtime.native_bf16`); ``adversarial`` enables
    round-3 adversarial training; ``eval_every_epoch`` measures held-out metrics after every epoch
    (otherwise only at the end).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: Optimizer = "adamw"
    weight_decay: float = 5e-4
    schedule: Schedule = "onecycle"
    label_smoothing: float = 0.0
    channels_last: bool = False
    bf16: bool | Literal["auto"] = False
    adversarial: AdversarialConfig | None = None
    eval_every_epoch: bool = False
    eval_batch_size: int = 256
    nesterov: bool = True
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    augment: Augment = "none"
    crop_padding: int = 4

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
                raise ConfigError(f"{name} must be an int in [1, 1000000], got {value!r}")
        for name in ("lr", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not self.lr > 0.0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("channels_last", "eval_every_epoch", "nesterov"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_bf16(self.bf16)
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "cosine", "constant", "multistep"):
            raise ConfigError(
                f"schedule must be 'onecycle', 'cosine', 'constant' or 'multistep', got {self.schedule!r}"
            )
        if isinstance(self.milestones, str) or not isinstance(self.milestones, Sequence):
            raise ConfigError(
                f"milestones must be a list of fractions of the epochs, got {self.milestones!r}"
            )
        milestones = tuple(self.milestones)
        if len(milestones) > 16 or not all(
            isinstance(m, int | float) and not isinstance(m, bool) and 0.0 < m < 1.0 for m in milestones
        ):
            raise ConfigError(f"milestones must be up to 16 fractions in (0, 1), got {self.milestones!r}")
        if list(milestones) != sorted(milestones):
            raise ConfigError(f"milestones must be increasing, got {self.milestones!r}")
        object.__setattr__(self, "milestones", tuple(float(m) for m in milestones))
        if (
            isinstance(self.gamma, bool)
            or not isinstance(self.gamma, int | float)
            or not 0.0 < self.gamma <= 1.0
        ):
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.augment not in ("none", "crop", "crop_flip"):
            raise ConfigError(f"augment must be 'none', 'crop' or 'crop_flip', got {self.augment!r}")
        if (
            isinstance(self.crop_padding, bool)
            or not isinstance(self.crop_padding, int)
            or not 0 <= self.crop_padding <= 64
        ):
            raise ConfigError(f"crop_padding must be an int in [0, 64], got {self.crop_padding!r}")
        if not self.weight_decay >= 0.0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.adversarial is not None and not isinstance(self.adversarial, AdversarialConfig):
            raise ConfigError("adversarial must be an AdversarialConfig or None")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["adversarial"] = None if self.adversarial is None else self.adversarial.to_dict()
        for name, default in _LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        data.update({k: list(v) for k, v in data.items() if isinstance(v, tuple)})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if values.get("adversarial") is not None:
            values["adversarial"] = AdversarialConfig.from_dict(values["adversarial"])
        return cls(**values)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=0.9,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step learning-rate factor: "onecycle" warms up linearly over the first quarter (from 4 %) then
    anneals by a cosine to zero; "cosine" anneals from the start; "constant" keeps ``lr``; "multistep"
    multiplies it by ``gamma`` at the first step of each milestone epoch (round(fraction · epochs))."""
    total = config.epochs * steps_per_epoch
    warmup = max(1, round(0.25 * total)) if config.schedule == "onecycle" else 0
    decays = [round(m * config.epochs) * steps_per_epoch for m in config.milestones]

    def factor(step: int) -> float:
        if config.schedule == "multistep":
            return config.gamma ** sum(step >= d for d in decays)
        if step < warmup:
            return 0.04 + 0.96 * step / warmup
        if config.schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def augment_batch(x: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random crops of the zero-padded images (and, "crop_flip", horizontal flips), one draw per sample."""
    if config.augment == "none":
        return x
    b, _, h, w = x.shape
    pad = config.crop_padding
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    out = padded[
        torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols
    ]
    if config.augment == "crop_flip":
        flip = torch.rand(b, generator=gen) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous(
        memory_format=torch.channels_last if config.channels_last else torch.contiguous_format
    )
