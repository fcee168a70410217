"""The attacks of the SDRM study (spec §6.3 [CHOICE]) and poisoning of ready-made image sets.

Attacks of different nature, each an :class:`~exray.attacks.Attack` (all-to-one by default: every class
but the target is a source):

* ``badnets`` — a solid square patch (Gu et al.), :class:`~exray.triggers.PatchTrigger`;
* ``blended`` — a seeded noise pattern, or with ``photo`` a natural photograph (the SDRM reference code's
  attack), blended at opacity 0.1 (Chen et al.; spec §6.2), :class:`~exray.triggers.BlendTrigger`;
* ``filter`` — an Instagram-style colour filter (TrojAI), :class:`~exray.triggers.InstagramFilter`;
* ``warp`` — a WaNet-style smooth warp, :class:`~exray.attacks.warp.WarpTrigger` (``cross_ratio``: its
  noise mode, :func:`with_noise_mode`);
* ``reflection`` — a photograph added as a reflection (Refool: in focus, out of focus or ghosted),
  :class:`~exray.triggers.ReflectionTrigger`; Refool poisons clean-label (``clean_label=True``).

:func:`poison_images` turns any labelled image set (the synthetic signs, the digits, a user's tensors) into
a poisoned training set with :func:`~exray.attacks.plan_poisoning` — triggered *copies* of a fraction of
the source images with the target label (or, clean-label, target images stamped in place) — and keeps the
per-sample poison flags, the ground truth of the detectors and of the SDRM loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from exray.attacks.poisoning import Attack, plan_poisoning
from exray.attacks.render import PoisonedDataset
from exray.attacks.warp import WarpTrigger
from exray.errors import ConfigError, InputError
from exray.train.data import AttackSet, PoisonRedraw, TrainSet
from exray.triggers import (
    INSTAGRAM_FILTERS,
    BlendTrigger,
    InstagramFilter,
    PatchTrigger,
    ReflectionTrigger,
    Trigger,
)
from exray.utils import derive_seed, torch_generator

#: Attack kinds and their trigger options with defaults.
ATTACK_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "badnets": MappingProxyType({"color": (1.0, 0.0, 1.0), "size": 0.125, "location": (1.0, 1.0)}),
        "blended": MappingProxyType({"opacity": 0.1, "photo": None}),
        "filter": MappingProxyType({"name": "kelvin"}),
        "warp": MappingProxyType({"strength": 0.5, "grid": 4, "cross_ratio": 0.0}),
        "reflection": MappingProxyType(
            {"photo": "hubble_deep_field", "mode": "ghost", "weight": 0.3, "sigma": 1.5, "ghost": 0.6}
        ),
    }
)
ATTACK_KINDS: tuple[str, ...] = tuple(ATTACK_OPTIONS)


@dataclass(frozen=True)
class AttackRecipe:
    """A study attack, validated: its ``kind`` (one of :data:`ATTACK_KINDS`), ``target_class``,
    ``fraction`` (share of the source classes' images that get a poisoned copy; for ``clean_label``, the
    share of the target class's images stamped in place), ``source_classes`` (``None``: all others) and
    trigger ``options`` (see :data:`ATTACK_OPTIONS`; omitted ones take their defaults) and ``poisoning``:
    ``"static"`` (one poisoned set, :func:`poison_images`) or ``"redrawn"`` (every epoch each source image is
    poisoned in place with probability ``fraction``, as the SDRM reference code; :func:`redrawn_set`).

    Pattern and warp-field seeds are derived from the seed passed to :meth:`build`.
    """

    kind: str
    target_class: int = 0
    fraction: float = 0.1
    source_classes: tuple[int, ...] | None = None
    clean_label: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    poisoning: str = "static"

    def __post_init__(self) -> None:
        if self.kind not in ATTACK_OPTIONS:
            raise ConfigError(f"unknown attack kind {self.kind!r}; known: {list(ATTACK_KINDS)}")
        unknown = set(self.options) - set(ATTACK_OPTIONS[self.kind])
        if unknown:
            raise ConfigError(
                f"attack {self.kind!r} has no options {sorted(unknown)}; "
                f"known: {sorted(ATTACK_OPTIONS[self.kind])}"
            )
        if (
            isinstance(self.target_class, bool)
            or not isinstance(self.target_class, int)
            or self.target_class < 0
        ):
            raise ConfigError(f"target_class must be an int >= 0, got {self.target_class!r}")
        if not isinstance(self.fraction, int | float) or not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction!r}")
        if self.poisoning not in ("static", "redrawn"):
            raise ConfigError(f"poisoning must be 'static' or 'redrawn', got {self.poisoning!r}")
        if self.poisoning == "redrawn" and self.clean_label:
            raise ConfigError("redrawn poisoning relabels source images: it cannot be clean-label")
        cross = self.options.get("cross_ratio", 0.0)
        if isinstance(cross, bool) or not isinstance(cross, int | float) or not 0.0 <= cross <= 10.0:
            raise ConfigError(f"cross_ratio must be a number in [0, 10], got {cross!r}")
        if cross and self.poisoning == "redrawn":
            raise ConfigError("WaNet's noise mode (cross_ratio > 0) is implemented for static poisoning only")
        if self.source_classes is not None:
            object.__setattr__(self, "source_classes", tuple(int(c) for c in self.source_classes))
        merged = {**ATTACK_OPTIONS[self.kind], **self.options}
        object.__setattr__(self, "options", MappingProxyType(merged))
        self.trigger(0)  # validates the options

    def trigger(self, seed: int) -> Trigger:
        """The trigger; ``seed`` fixes the blend pattern or the warp field."""
        o = self.options
        if self.kind == "badnets":
            return PatchTrigger(tuple(o["color"]), float(o["size"]), tuple(o["location"]))
        if self.kind == "blended":
            return BlendTrigger(derive_seed(seed, "blend") % 2**31, float(o["opacity"]), o["photo"])
        if self.kind == "filter":
            if o["name"] not in INSTAGRAM_FILTERS:
                raise ConfigError(f"unknown filter {o['name']!r}; known: {list(INSTAGRAM_FILTERS)}")
            return InstagramFilter(str(o["name"]))
        if self.kind == "reflection":
            return ReflectionTrigger(
                o["photo"], o["mode"], float(o["weight"]), float(o["sigma"]), float(o["ghost"])
            )
        return WarpTrigger(derive_seed(seed, "warp") % 2**31, float(o["strength"]), int(o["grid"]))

    def build(self, num_classes: int, seed: int) -> Attack:
        """The :class:`Attack` for a ``num_classes`` task (``ConfigError`` if a class is out of range)."""
        sources = self.source_classes
        if sources is None:
            sources = tuple(c for c in range(num_classes) if c != self.target_class)
        attack = Attack(
            self.trigger(seed), sources, self.target_class, float(self.fraction), clean_label=self.clean_label
        )
        attack.check_classes(num_classes)
        return attack

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target_class": self.target_class,
            "fraction": self.fraction,
            "source_classes": None if self.source_classes is None else list(self.source_classes),
            "clean_label": self.clean_label,
            "options": {  # a blend without a photo and a warp without noise mode are left out, so that
                k: list(v) if isinstance(v, tuple) else v  # earlier studies keep their cache keys
                for k, v in self.options.items()
                if not (k == "photo" and v is None) and not (k == "cross_ratio" and not v)
            },
            # Left out when static, so that earlier studies keep their cache keys.
            **({"poisoning": self.poisoning} if self.poisoning != "static" else {}),
        }


def _check_set(images: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise InputError("images must be a (N, 3, H, W) tensor")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        raise InputError(f"labels must be a ({images.shape[0]},) tensor")


def poison_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[Attack],
    seed: int,
    *,
    masks: torch.Tensor | None = None,
    num_classes: int | None = None,
) -> PoisonedDataset:
    """A poisoned training set over a clean base set ``images`` (N, 3, H, W) in [0, 1] with ``labels``.

    Rows follow :func:`~exray.attacks.plan_poisoning` (seed ``derive_seed(seed, "plan")``): the base images
    first, then the triggered copies. Triggers are applied post hoc with ``masks`` (N, 1, H, W) as the
    foreground (default: the whole image); trigger t draws any random choices from
    ``derive_seed(seed, "trigger", t)``.
    """
    _check_set(images, labels)
    n, _, h, w = images.shape
    if masks is None:
        masks = torch.ones(n, 1, h, w, dtype=torch.bool)
    elif masks.shape != (n, 1, h, w):
        raise InputError(f"masks must have shape {(n, 1, h, w)}, got {tuple(masks.shape)}")
    plan = plan_poisoning(labels.numpy(), attacks, derive_seed(seed, "plan"), num_classes=num_classes)
    base = torch.from_numpy(plan.base_index)
    out = images[base].clone()
    out_masks = masks[base].clone()
    for t, trigger in enumerate(plan.triggers):
        rows = torch.from_numpy(np.flatnonzero(plan.trigger_index == t))
        if rows.numel():
            rng = np.random.default_rng(derive_seed(seed, "trigger", t))
            out[rows] = trigger.apply(out[rows], foreground=out_masks[rows], rng=rng).to(out.dtype)
    return PoisonedDataset.from_plan(plan, out, out_masks)


def _stamp_sources(
    images: torch.Tensor, labels: torch.Tensor, attack: Attack, masks: torch.Tensor | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``attack``'s source classes and their triggered images."""
    _check_set(images, labels)
    rows = torch.from_numpy(np.flatnonzero(np.isin(labels.numpy(), attack.source_classes)))
    if rows.numel() == 0:
        raise InputError("the set holds no image of the attack's source classes")
    foreground = None if masks is None else masks[rows]
    if foreground is None and attack.trigger.stamps_foreground:
        foreground = torch.ones(rows.numel(), 1, *images.shape[-2:], dtype=torch.bool)
    rng = np.random.default_rng(derive_seed(seed, "trigger"))
    return rows, attack.trigger.apply(images[rows], foreground=foreground, rng=rng).to(images.dtype)


def triggered_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    *,
    masks: torch.Tensor | None = None,
    name: str = "attack",
    seed: int = 0,
) -> AttackSet:
    """The held-out ASR set: every image of ``attack``'s source classes with the trigger applied."""
    _, stamped = _stamp_sources(images, labels, attack, masks, seed)
    return AttackSet(stamped, attack.target_class, name)


def with_noise_mode(train: TrainSet, trigger: WarpTrigger, cross_ratio: float, seed: int) -> TrainSet:
    """``train`` plus WaNet's noise-mode rows: ``cross_ratio`` × its poisoned count of its clean rows (drawn
    with ``seed``), each warped by :meth:`WarpTrigger.noise_warp`, at their true labels and not poisoned.
    The rows are drawn once, like the static poison (WaNet draws fresh noise for every batch)."""
    if train.redraw is not None:
        raise InputError("noise mode needs a statically poisoned set")
    poisoned = train.poisoned if train.poisoned is not None else torch.zeros(len(train), dtype=torch.bool)
    clean_rows = torch.from_numpy(np.flatnonzero(~poisoned.numpy()))
    count = min(len(clean_rows), round(cross_ratio * int(poisoned.sum())))
    generator = torch_generator(derive_seed(seed, "noise-mode"))
    rows = clean_rows[torch.randperm(len(clean_rows), generator=generator)[:count]]
    noisy = trigger.noise_warp(train.images[rows], generator).to(train.images.dtype)
    true = train.true_labels if train.true_labels is not None else train.labels
    return TrainSet(
        torch.cat([train.images, noisy]),
        torch.cat([train.labels, true[rows]]),
        poisoned=torch.cat([poisoned, torch.zeros(count, dtype=torch.bool)]),
        true_labels=torch.cat([true, true[rows]]),
    )


def static_set(
    recipe: AttackRecipe,
    attack: Attack,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    *,
    masks: torch.Tensor | None = None,
    num_classes: int | None = None,
) -> TrainSet:
    """The statically poisoned training set of ``recipe``'s ``attack`` (built from the recipe): the poisoned
    copies of :func:`poison_images` and, for a warp with ``cross_ratio``, WaNet's noise-mode rows
    (:func:`with_noise_mode`), both drawn from ``seed``."""
    train = poison_images(images, labels, [attack], seed, masks=masks, num_classes=num_classes).train_set()
    if recipe.kind == "warp" and recipe.options["cross_ratio"]:
        train = with_noise_mode(train, attack.trigger, recipe.options["cross_ratio"], seed)
    return train


def redrawn_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    probability: float,
    *,
    masks: torch.Tensor | None = None,
    seed: int = 0,
) -> TrainSet:
    """A training set whose poisoning is re-drawn every epoch (the SDRM reference code): the clean
    ``images`` with every source-class image replaced, each epoch with ``probability``, by its triggered
    version labelled ``attack.target_class`` (:class:`~exray.train.PoisonRedraw`)."""
    rows, stamped = _stamp_sources(images, labels, attack, masks, seed)
    return TrainSet(
        images, labels, redraw=PoisonRedraw(rows, stamped, float(probability), attack.target_class)
    )
