"""The scanners' result contract: :class:`FoundTrigger` and :class:`ScannerResult` (issue 4, design §2).

A :class:`FoundTrigger` is any :class:`~exray.triggers.Trigger` together with the victim and target it
flips and how well it does so, measured the same way whoever produced it — ABS, Neural Cleanse or a user
(:meth:`FoundTrigger.evaluate`): label-specific REASR on the victim class (spec §2.9) and the universal
attack success rate on every non-target class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from exray.errors import ConfigError, InputError
from exray.models.runtime import derive_target, predict_logits
from exray.scanners.common import Examples, check_examples
from exray.scanners.ssim import ms_ssim
from exray.triggers import Trigger, trigger_from_config
from exray.triggers.inverted import MaskPatternTrigger

TriggerKind = Literal["patch", "filter"]
KINDS: tuple[str, ...] = ("patch", "filter")
#: Trigger types that transform the whole image's colours; every other type is treated as a patch.
FILTER_TYPES = frozenset({"filter_map", "instagram", "color_transform"})


def trigger_kind(trigger: Trigger) -> TriggerKind:
    """ "filter" for whole-image colour transforms, "patch" for everything else."""
    return "filter" if trigger.type in FILTER_TYPES else "patch"


@dataclass
class FoundTrigger:
    """A trigger that flips ``victim`` to ``target``.

    ``asr``: label-specific REASR, the fraction of the victim class's clean examples classified as
    ``target`` once stamped. ``universal_asr``: the same over every example whose class is not ``target``.
    ``size``: for a patch, the pixels of the binarised mask (m > 0.1) or, for a trigger without a mask,
    the mean number of pixels stamping changes; for a filter, 1 − the mean MS-SSIM between the victim
    images and their filtered copies (0 = invisible; ``None`` when the images are too small for MS-SSIM).
    ``details``: scanner-specific JSON-able facts (task, neuron, RE accuracy, norms, …).
    """

    trigger: Trigger
    victim: int
    target: int
    kind: TriggerKind
    asr: float
    size: float | None = None
    universal_asr: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.trigger, Trigger):
            raise ConfigError(f"trigger must be a Trigger, got {type(self.trigger).__name__}")
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("victim", "target"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise ConfigError(f"{name} must be a class index (or -1), got {value!r}")
        for name in ("asr", "universal_asr"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")

    def stamp(self, images: torch.Tensor) -> torch.Tensor:
        """The images with the trigger applied."""
        return self.trigger.apply(images)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` rebuilds an equal object through the trigger registry."""
        return {
            "trigger": self.trigger.to_config(),
            "victim": self.victim,
            "target": self.target,
            "kind": self.kind,
            "asr": self.asr,
            "size": self.size,
            "universal_asr": self.universal_asr,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FoundTrigger:
        expected = {"trigger", "victim", "target", "kind", "asr", "size", "universal_asr", "details"}
        if not isinstance(data, Mapping) or set(data) != expected:
            raise ConfigError(f"a found-trigger dict needs exactly the keys {sorted(expected)}")
        return cls(
            trigger=trigger_from_config(data["trigger"]),
            victim=int(data["victim"]),
            target=int(data["target"]),
            kind=data["kind"],
            asr=float(data["asr"]),
            size=None if data["size"] is None else float(data["size"]),
            universal_asr=float(data["universal_asr"]),
            details=dict(data["details"]),
        )

    @classmethod
    def evaluate(
        cls,
        model: nn.Module,
        trigger: Trigger,
        examples: Mapping[int, torch.Tensor] | Examples,
        *,
        victim: int,
        target: int | None = None,
        kind: TriggerKind | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> FoundTrigger:
        """Measure any trigger (e.g. one a user supplies) on the model's clean examples.

        ``target=None`` re-derives it from the stamped victim predictions (spec §4.2; −1 if nothing
        flips). ``kind=None`` infers it from the trigger type.
        """
        data = examples if isinstance(examples, Examples) else check_examples(model, examples)
        if victim not in data.by_class:
            raise InputError(f"no examples of the victim class {victim}")
        preds = stamped_predictions(model, trigger, data)
        if target is None:
            target = derive_target(preds[victim], victim)
        elif isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < data.num_classes:
            raise InputError(f"target must be a class of the {data.num_classes}-class model, got {target!r}")
        per_class, universal = attack_rates(preds, target)
        kind = kind or trigger_kind(trigger)
        return cls(
            trigger=trigger,
            victim=victim,
            target=target,
            kind=kind,
            asr=per_class.get(victim, 0.0),
            size=trigger_size(trigger, kind, data.by_class[victim]),
            universal_asr=universal,
            details=dict(details or {}),
        )


def stamped_predictions(model: nn.Module, trigger: Trigger, data: Examples) -> dict[int, torch.Tensor]:
    """Predicted labels of every class's examples once stamped with ``trigger``."""
    return {c: predict_logits(model, trigger.apply(data.by_class[c])).argmax(1).cpu() for c in data.classes}


def attack_rates(preds: Mapping[int, torch.Tensor], target: int) -> tuple[dict[int, float], float]:
    """Per source class s ≠ target: the fraction of its stamped examples predicted ``target``; and the
    universal rate over all those examples together (spec §2.9, steps 2 and 4)."""
    per_class = {s: float((p == target).float().mean()) for s, p in preds.items() if s != target}
    flipped = sum(int((p == target).sum()) for s, p in preds.items() if s != target)
    total = sum(len(p) for s, p in preds.items() if s != target)
    return per_class, (flipped / total if total else 0.0)


def best_source(per_class: Mapping[int, float]) -> tuple[int, float]:
    """(best_base, best_tscore): the source class with the highest rate; ties go to the later class."""
    best, score = -1, -1.0
    for source in sorted(per_class):
        if per_class[source] >= score:
            best, score = source, per_class[source]
    return best, max(score, 0.0)


def trigger_size(trigger: Trigger, kind: str, victim_images: torch.Tensor) -> float | None:
    """The size measure documented on :class:`FoundTrigger`."""
    if kind == "filter":
        if min(victim_images.shape[-2:]) < 16:
            return None
        with torch.no_grad():
            return float(1.0 - ms_ssim(victim_images, trigger.apply(victim_images)).mean())
    if isinstance(trigger, MaskPatternTrigger):
        return float(trigger.size)
    with torch.no_grad():
        changed = (trigger.apply(victim_images) - victim_images).abs().amax(1) > 1e-6
    return float(changed.flatten(1).sum(1).float().mean())


@dataclass
class ScannerResult:
    """What a scan found: triggers, seconds per stage, and JSON-able diagnostics.

    ``scanner``: the registry name. ``options``: the scanner's resolved options. ``layer``: the layer the
    scan worked at (``None`` if the scanner uses none).
    """

    scanner: str
    triggers: list[FoundTrigger]
    timings: dict[str, float]
    diagnostics: dict[str, Any]
    layer: str | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanner": self.scanner,
            "layer": self.layer,
            "seed": self.seed,
            "options": self.options,
            "triggers": [t.to_dict() for t in self.triggers],
            "timings": self.timings,
            "diagnostics": self.diagnostics,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScannerResult:
        try:
            return cls(
                scanner=str(data["scanner"]),
                triggers=[FoundTrigger.from_dict(t) for t in data["triggers"]],
                timings={str(k): float(v) for k, v in data["timings"].items()},
                diagnostics=dict(data["diagnostics"]),
                layer=data["layer"],
                seed=int(data["seed"]),
                options=dict(data["options"]),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"not a scanner result dict: {err}") from None
