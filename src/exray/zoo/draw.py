"""From a spec to concrete models: the population design and each model's random draw (spec §7.3.7–7.3.8).

Two levels, both deterministic:

* :func:`designs` fixes what a model *is* from (spec seed, model index): clean or trojaned (a seeded
  shuffle of the counts, so roles are not guessable from the index), its architecture (round-robin within
  the clean and within the trojaned models, so both groups mix architectures alike) and its first trigger
  type (cycled per architecture, so trigger type and architecture do not coincide).
* :func:`draw_model` draws one *attempt* at that model from ``derive_seed(model_seed, "attempt", a)``:
  class count, confusion pairs, sign classes, triggers with their source/target classes and fractions,
  adversarial-training settings, and the data/training seeds. A model that misses the quality bar is
  redrawn with the next attempt (same design, new realisation).

:func:`recipe` is the JSON record of everything that determines a model before any draw — its design and
the spec's model-shaping sections; its hash tells a finished model directory whether the spec changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from exray.attacks import Attack, draw_source_classes
from exray.attacks.warp import WarpTrigger
from exray.data.signs import PALETTE, SignClass, draw_classes, find_confusion_pairs
from exray.errors import ConfigError
from exray.train import AdversarialConfig, TrainConfig
from exray.triggers import (
    REGIONS,
    BlendTrigger,
    ColorTransformFilter,
    InstagramFilter,
    PatchTrigger,
    PolygonTrigger,
    Trigger,
)
from exray.triggers.patch import BLEND_PHOTOS
from exray.triggers.reflection import ReflectionTrigger
from exray.utils import derive_seed
from exray.zoo.spec import ArchitectureChoice, ZooSpec

_POLYGON_DRAWS = 64  # redraws of a polygon in search of a colour far from the source signs' fills


def model_name(index: int) -> str:
    """TrojAI-style directory name of model ``index``: ``id-00000003``."""
    return f"id-{index:08d}"


@dataclass(frozen=True)
class ModelDesign:
    """What model ``index`` of a zoo is, independent of any random draw."""

    index: int
    poisoned: bool
    architecture: ArchitectureChoice
    trigger_type: str | None
    model_seed: int

    @property
    def name(self) -> str:
        return model_name(self.index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "poisoned": self.poisoned,
            "architecture": self.architecture.name,
            "arch_kwargs": dict(self.architecture.kwargs),
            "trigger_type": self.trigger_type,
            "model_seed": self.model_seed,
        }


def designs(spec: ZooSpec) -> list[ModelDesign]:
    """The designs of all ``spec.num_models`` models, in index order."""
    roles = np.array([False] * spec.models.clean + [True] * spec.models.trojaned)
    roles = roles[np.random.default_rng(derive_seed(spec.seed, "roles")).permutation(roles.size)]
    archs, types = spec.architectures, spec.triggers.types
    rank = {False: 0, True: 0}
    result = []
    for index, poisoned in enumerate(roles.tolist()):
        j = rank[poisoned]
        rank[poisoned] += 1
        # The r-th model of architecture a gets type (a + r) mod T: every architecture cycles through
        # the trigger types, and the types stay balanced overall.
        trigger_type = types[(j % len(archs) + j // len(archs)) % len(types)] if poisoned else None
        result.append(
            ModelDesign(
                index=index,
                poisoned=poisoned,
                architecture=archs[j % len(archs)],
                trigger_type=trigger_type,
                model_seed=derive_seed(spec.seed, "model", index),
            )
        )
    return result


def recipe(spec: ZooSpec, design: ModelDesign) -> dict[str, Any]:
    """Everything that determines the model besides the attempt: its design and the spec's sections
    that shape models (not the zoo name or the counts, which reach a model only through its design)."""
    sections = {k: v for k, v in spec.to_dict().items() if k not in ("name", "models")}
    return {"design": design.to_dict(), "spec": sections}


def recipe_hash(spec: ZooSpec, design: ModelDesign) -> str:
    """SHA-256 of the canonical JSON of :func:`recipe`."""
    return hashlib.sha256(json.dumps(recipe(spec, design), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelDraw:
    """One attempt at a model: everything needed to render its data and train it."""

    design: ModelDesign
    attempt: int
    seed: int
    classes: tuple[SignClass, ...]
    attacks: tuple[Attack, ...]
    examples_per_class: int
    training: TrainConfig

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def data_seed(self) -> int:
        return derive_seed(self.seed, "data")

    @property
    def train_seed(self) -> int:
        return derive_seed(self.seed, "train")

    @property
    def examples_seed(self) -> int:
        return derive_seed(self.seed, "examples")

    def confusion_pairs(self) -> list[tuple[int, int]]:
        return find_confusion_pairs(self.classes)


def draw_model(spec: ZooSpec, design: ModelDesign, attempt: int = 0) -> ModelDraw:
    """Draw attempt ``attempt`` of the model ``design`` (see the module docstring)."""
    seed = derive_seed(design.model_seed, "attempt", attempt)
    rng = np.random.default_rng(seed)
    lo, hi = spec.classes
    k = int(rng.integers(lo, hi + 1))
    cp_lo, cp_hi = spec.confusion_pairs
    pairs = int(rng.integers(cp_lo, min(cp_hi, k // 2) + 1))
    classes = tuple(
        draw_classes(
            k,
            derive_seed(seed, "classes"),
            confusion_pairs=pairs,
            fills=spec.signs.fills,
            colour_cues=spec.signs.colour_cues,
        )
    )
    examples = int(rng.integers(spec.data.examples_per_class[0], spec.data.examples_per_class[1] + 1))
    attacks = _draw_attacks(spec, design, classes, rng) if design.poisoned else ()
    return ModelDraw(
        design=design,
        attempt=attempt,
        seed=seed,
        classes=classes,
        attacks=attacks,
        examples_per_class=examples,
        training=_training(spec, design.architecture, rng),
    )


def _draw_attacks(
    spec: ZooSpec, design: ModelDesign, classes: tuple[SignClass, ...], rng: np.random.Generator
) -> tuple[Attack, ...]:
    ts = spec.triggers
    k = len(classes)
    count = int(rng.choice(ts.per_model))
    if count == 1:
        target = int(rng.integers(k))
        mode = ts.source_modes[int(rng.integers(len(ts.source_modes)))]
        links = [(draw_source_classes(mode, k, target, rng), target)]
    else:  # round 4: two one-to-one triggers, possibly sharing their source class, different targets
        order = [int(c) for c in rng.permutation(k)]
        shared = bool(rng.random() < ts.shared_source_probability)
        links = [((order[0],), order[1]), ((order[0],) if shared else (order[2],), order[3])]
    types = [design.trigger_type] + [ts.types[int(rng.integers(len(ts.types)))] for _ in links[1:]]
    attacks: list[Attack] = []
    for (sources, target), kind in zip(links, types, strict=True):
        trigger = draw_trigger(spec, kind, [classes[s] for s in sources], [a.trigger for a in attacks], rng)
        attacks.append(
            Attack(
                trigger=trigger,
                source_classes=sources,
                target_class=target,
                fraction=float(rng.uniform(*ts.fraction)),
                counter_fraction=float(rng.uniform(*ts.counter_fraction)),
            )
        )
    return tuple(attacks)


def draw_trigger(
    spec: ZooSpec,
    kind: str | None,
    sources: list[SignClass],
    taken: list[Trigger],
    rng: np.random.Generator,
) -> Trigger:
    """A trigger of type ``kind`` drawn with ``spec.triggers``' settings: a polygon in a colour far from the
    ``sources``' fills, a filter other than those ``taken``, …"""
    ts = spec.triggers
    if kind == "polygon":
        region = None
        if rng.random() < ts.polygon.spatial_probability:
            region = REGIONS[int(rng.integers(len(REGIONS)))]
        fills = np.array([PALETTE[c.fill] for c in sources], dtype=float) / 255.0
        best, best_distance = None, -1.0
        for _ in range(_POLYGON_DRAWS):
            candidate = PolygonTrigger.random(rng, size_range=ts.polygon.size, region=region)
            distance = float(np.linalg.norm(fills - np.asarray(candidate.color), axis=1).min())
            if distance > best_distance:
                best, best_distance = candidate, distance
            if distance >= ts.polygon.min_contrast:
                break
        assert best is not None
        return best
    if kind == "instagram":
        used = {t.name for t in taken if isinstance(t, InstagramFilter)}
        names = [n for n in ts.instagram.filters if n not in used] or list(ts.instagram.filters)
        return InstagramFilter(names[int(rng.integers(len(names)))])
    if kind == "color_transform":
        return ColorTransformFilter.random(rng, strength=float(rng.uniform(*ts.color_transform.strength)))
    if kind == "patch":
        color = tuple(int(c) / 255.0 for c in rng.integers(0, 256, size=3))
        corner = (float(rng.integers(2)), float(rng.integers(2)))
        return PatchTrigger(color, float(rng.uniform(*ts.patch.size)), corner)  # type: ignore[arg-type]
    if kind == "blend":
        return BlendTrigger(int(rng.integers(2**31)), float(rng.uniform(*ts.blend.opacity)))
    if kind == "reflection":
        photos = sorted(BLEND_PHOTOS)
        return ReflectionTrigger(
            photo=photos[int(rng.integers(len(photos)))],
            mode=ts.reflection.modes[int(rng.integers(len(ts.reflection.modes)))],  # type: ignore[arg-type]
            weight=float(rng.uniform(*ts.reflection.weight)),
        )
    if kind == "warp":
        return WarpTrigger(int(rng.integers(2**31)), float(rng.uniform(*ts.warp.strength)), ts.warp.grid)
    raise ConfigError(f"unknown trigger type {kind!r}")


def _training(spec: ZooSpec, arch: ArchitectureChoice, rng: np.random.Generator) -> TrainConfig:
    tr = replace(spec.training, **arch.training)
    adv = tr.adversarial
    adversarial = None
    if adv.probability > 0.0 and rng.random() < adv.probability:
        method = adv.methods[int(rng.integers(len(adv.methods)))]
        iterations = int(rng.choice(adv.pgd_iterations)) if method == "pgd" else 1
        adversarial = AdversarialConfig(
            method=method,
            eps=float(rng.choice(adv.eps)) / 255.0,
            ratio=float(rng.choice(adv.ratio)),
            iterations=iterations,
        )
    return TrainConfig(
        epochs=tr.epochs,
        batch_size=tr.batch_size,
        lr=tr.lr,
        optimizer=tr.optimizer,  # type: ignore[arg-type]
        weight_decay=tr.weight_decay,
        schedule=tr.schedule,  # type: ignore[arg-type]
        label_smoothing=tr.label_smoothing,
        channels_last=tr.channels_last,
        bf16=tr.bf16,
        adversarial=adversarial,
    )
