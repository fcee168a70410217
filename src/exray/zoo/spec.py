"""Zoo specs: a validated description of a model population (spec §7.3.8, design §3 ``exray zoo build``).

A spec is a JSON or YAML mapping; every section is optional except ``models``. Unknown keys are rejected
with the key's dotted path and the allowed keys; values are type- and range-checked. Ranges are ``[lo, hi]``
(inclusive; integers for counts), choices are lists. Defaults::

    name: <file stem>            seed: 0
    models: {clean: <required>, trojaned: <required>}
    classes: [5, 10]             confusion_pairs: [0, 1]       image_size: 32
    signs: {fills: null,         # null: any shape × any palette colour (v1); a list of colours: the
            colour_cues: true}   # shared-fill class design of population v2 (exray.data.signs); false:
                                 # glyph colour follows the fill, no borders, distinct shapes
    architectures: [{name: resnet18, kwargs: {width: 0.25}, training: {}}]  # round-robin in clean / trojaned;
                                                        # training: overrides of the training section
    data: {train_per_class: 300, test_per_class: 100, attack_per_class: 50,
           examples_per_class: [10, 20], augment: {}}          # augment: AugmentOptions overrides
    triggers:
      types: [polygon, instagram]          # round-robin over trojaned; also color_transform, patch, blend,
                                           # reflection, warp
      per_model: [1]                       # choices of 1 or 2 triggers (two: one-to-one each, round 4)
      source_modes: [1, 2, all]            # attacked source classes (rounds 2–3)
      shared_source_probability: 0.5       # two triggers share their source class (round 4)
      fraction: [0.1, 0.5]                 # poisoned share of the source classes' images
      counter_fraction: [0.0, 0.0]         # triggered copies keeping their label (conditional triggers)
      polygon: {size: [0.02, 0.25], spatial_probability: 0.0, min_contrast: 0.25}
      instagram: {filters: [gotham, nashville, kelvin, lomo, toaster]}
      color_transform: {strength: [0.5, 1.0]}
      patch: {size: [0.1, 0.25]}
      blend: {opacity: [0.1, 0.2]}
      reflection: {modes: [ghost, blur, focus], weight: [0.2, 0.4]}   # Refool (types: reflection)
      warp: {strength: [0.5, 1.0], grid: 4}                          # WaNet (types: warp)
    training: {epochs: 12, batch_size: 64, lr: 0.003, optimizer: adamw, weight_decay: 0.0005,
               schedule: onecycle, label_smoothing: 0.0, channels_last: true,
               bf16: true,                      # true, false or auto: where the CPU/GPU computes bf16
               adversarial: {probability: 0.0, methods: [pgd, fbf], eps: [4, 8, 16],   # eps in 1/255
                             ratio: [0.1, 0.3], pgd_iterations: [1, 3, 7]},
               adaptive: {weight: 0, variant: moments, layer: null}}   # EX-RAY §4.5's adaptive loss on
                                                    # the trojaned models (exray.attacks.adaptive); 0 = off
    quality: {min_clean_accuracy: 0.9, min_attack_success_rate: 0.9, attempts: 3}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exray.attacks import SOURCE_MODES
from exray.data.signs import PALETTE, SHAPES
from exray.data.synth import AugmentOptions
from exray.errors import ConfigError
from exray.models import get_architecture, list_architectures
from exray.models.registry import check_buildable
from exray.specfile import MAX_SEED, Section, check_name, load_spec_file
from exray.triggers import INSTAGRAM_FILTERS
from exray.zoo.schema import (
    TRIGGER_TYPES,
    AdaptiveSpec,
    AdversarialSpec,
    ArchitectureChoice,
    BlendSpec,
    ColorTransformSpec,
    DataSpec,
    InstagramSpec,
    ModelCounts,
    PatchSpec,
    PolygonSpec,
    QualitySpec,
    ReflectionSpec,
    SignSpec,
    TrainingSpec,
    TriggerSpec,
    WarpSpec,
    ZooSpec,
)

_MAX_CLASSES = len(SHAPES) * len(PALETTE)
KIND = "zoo spec"  # how errors name the file
#: The specs shipped with exray (package data; ``zoos/`` in a source checkout links to them).
SHIPPED_SPECS = Path(__file__).resolve().parent / "specs"
MAX_MODELS = 100_000  # per kind (clean, trojaned)

__all__ = [
    "TRIGGER_TYPES",
    "AdversarialSpec",
    "ArchitectureChoice",
    "BlendSpec",
    "ColorTransformSpec",
    "DataSpec",
    "InstagramSpec",
    "ModelCounts",
    "PatchSpec",
    "PolygonSpec",
    "QualitySpec",
    "SignSpec",
    "TrainingSpec",
    "TriggerSpec",
    "ZooSpec",
    "load_spec",
    "parse_spec",
]

_TOP_KEYS = (
    "name",
    "seed",
    "models",
    "classes",
    "confusion_pairs",
    "image_size",
    "signs",
    "architectures",
    "data",
    "triggers",
    "training",
    "quality",
)


def parse_spec(data: Any, *, default_name: str = "zoo") -> ZooSpec:
    """Validate a spec mapping (parsed JSON/YAML) into a :class:`ZooSpec`; ConfigError on any problem."""
    top = Section(data, "", _TOP_KEYS, kind=KIND)
    name = top.get("name", default_name)
    check_name(top, name)
    if "models" not in top.data:
        raise top.fail("models", "is required: {clean: N, trojaned: M}")
    models = top.section("models", ("clean", "trojaned"))
    clean = models.int("clean", None, 0, MAX_MODELS)
    trojaned = models.int("trojaned", None, 0, MAX_MODELS)
    if clean + trojaned < 1:
        raise models.fail("clean", "and 'models.trojaned' must add up to at least one model")
    classes = top.int_range("classes", (5, 10), 2, _MAX_CLASSES)
    confusion = top.int_range("confusion_pairs", (0, 1), 0, _MAX_CLASSES)
    if confusion[1] > classes[0] // 2:
        raise top.fail("confusion_pairs", f"cannot exceed half the smallest class count ({classes[0] // 2})")
    triggers = _triggers(top.section("triggers", _TRIGGER_KEYS))
    if trojaned:
        need = max(4 if 2 in triggers.per_model else 2, 3 if 2 in triggers.source_modes else 2)
        if classes[0] < need:
            raise top.fail("classes", f"must start at >= {need} for these trigger settings, got {classes[0]}")
    return ZooSpec(
        name=name,
        models=ModelCounts(clean, trojaned),
        seed=top.int("seed", 0, 0, MAX_SEED),
        classes=classes,
        confusion_pairs=confusion,
        image_size=top.int("image_size", 32, 16, 256),
        signs=_signs(top.section("signs", ("fills", "colour_cues")), classes, confusion),
        architectures=_architectures(top),
        data=_data(top.section("data", _DATA_KEYS)),
        triggers=triggers,
        training=_training(top.section("training", _TRAINING_KEYS)),
        quality=_quality(
            top.section("quality", ("min_clean_accuracy", "min_attack_success_rate", "attempts"))
        ),
    )


def load_spec(path: str | Path) -> ZooSpec:
    """Read and validate a JSON (``.json``) or YAML (``.yaml``/``.yml``) spec file."""
    return load_spec_file(path, KIND, parse_spec)


def _architectures(top: Section) -> tuple[ArchitectureChoice, ...]:
    value = top.get("architectures", [{"name": "resnet18", "kwargs": {"width": 0.25}}])
    if not isinstance(value, list) or not value:
        raise top.fail("architectures", f"must be a non-empty list of {{name, kwargs}}, got {value!r}")
    known = list_architectures()
    result = []
    for i, item in enumerate(value):
        entry = Section(item, f"architectures[{i}]", ("name", "kwargs", "training"), kind=KIND)
        name = entry.get("name", None)
        if name not in known:
            raise entry.fail("name", f"must be a registered architecture ({', '.join(known)}), got {name!r}")
        kwargs = entry.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise entry.fail("kwargs", f"must be a mapping of keyword arguments, got {kwargs!r}")
        accepted = get_architecture(name).parameters()
        for key in kwargs:
            if key not in accepted:
                raise entry.fail(
                    "kwargs", f"has {key!r}, which {name} does not accept; it accepts {sorted(accepted)}"
                )
        try:
            check_buildable(name, 2, dict(kwargs))
        except ConfigError as err:
            raise entry.fail("kwargs", f"do not build a {name}: {err}") from None
        overrides = entry.section(
            "training", tuple(k for k in _TRAINING_KEYS if k not in ("adversarial", "adaptive"))
        )
        parsed = _training(overrides)
        result.append(ArchitectureChoice(name, dict(kwargs), {k: getattr(parsed, k) for k in overrides.data}))
    return tuple(result)


def _signs(section: Section, classes: tuple[int, int], confusion: tuple[int, int]) -> SignSpec:
    fills = section.get("fills", None)
    colour_cues = section.bool("colour_cues", True)
    if fills is None:
        if not colour_cues:
            raise section.fail("colour_cues", "false needs 'signs.fills' (the shared fill colours)")
        return SignSpec()
    names = section.choices("fills", (), tuple(PALETTE))
    most_looks = classes[1] - confusion[0]
    per_fill = max(1, min(len(names), most_looks // 2))
    if most_looks > per_fill * len(SHAPES):
        raise section.fail("fills", f"are too few for {most_looks} looks ({len(SHAPES)} shapes per fill)")
    return SignSpec(tuple(names), colour_cues)


_DATA_KEYS = ("train_per_class", "test_per_class", "attack_per_class", "examples_per_class", "augment")


def _data(section: Section) -> DataSpec:
    augment = section.get("augment", {})
    if not isinstance(augment, Mapping):
        raise section.fail("augment", f"must be a mapping of augmentation options, got {augment!r}")
    try:
        AugmentOptions.from_dict(augment)
    except (ConfigError, TypeError) as err:
        raise section.fail("augment", f"is invalid: {err}") from None
    return DataSpec(
        train_per_class=section.int("train_per_class", 300, 10, 100_000),
        test_per_class=section.int("test_per_class", 100, 10, 100_000),
        attack_per_class=section.int("attack_per_class", 50, 10, 100_000),
        examples_per_class=section.int_range("examples_per_class", (10, 20), 1, 1000),
        augment=dict(augment),
    )


_TRIGGER_KEYS = (
    "types",
    "per_model",
    "source_modes",
    "shared_source_probability",
    "fraction",
    "counter_fraction",
    "polygon",
    "instagram",
    "color_transform",
    "patch",
    "blend",
    "reflection",
    "warp",
)


def _triggers(section: Section) -> TriggerSpec:
    polygon = section.section("polygon", ("size", "spatial_probability", "min_contrast"))
    instagram = section.section("instagram", ("filters",))
    reflection = section.section("reflection", ("modes", "weight"))
    warp = section.section("warp", ("strength", "grid"))
    return TriggerSpec(
        types=section.choices("types", ("polygon", "instagram"), TRIGGER_TYPES),
        per_model=section.choices("per_model", (1,), (1, 2)),
        source_modes=section.choices("source_modes", (1, 2, "all"), SOURCE_MODES),
        shared_source_probability=section.float("shared_source_probability", 0.5, 0.0, 1.0),
        fraction=section.float_range("fraction", (0.1, 0.5), 0.0, 1.0, open_lo=True),
        counter_fraction=section.float_range("counter_fraction", (0.0, 0.0), 0.0, 1.0),
        polygon=PolygonSpec(
            size=polygon.float_range("size", (0.02, 0.25), 0.0, 0.99, open_lo=True),
            spatial_probability=polygon.float("spatial_probability", 0.0, 0.0, 1.0),
            min_contrast=polygon.float("min_contrast", 0.25, 0.0, 1.0),
        ),
        instagram=InstagramSpec(
            filters=instagram.choices("filters", tuple(INSTAGRAM_FILTERS), tuple(INSTAGRAM_FILTERS))
        ),
        color_transform=ColorTransformSpec(
            strength=section.section("color_transform", ("strength",)).float_range(
                "strength", (0.5, 1.0), 0.0, 1.0, open_lo=True
            )
        ),
        patch=PatchSpec(
            size=section.section("patch", ("size",)).float_range("size", (0.1, 0.25), 0.0, 1.0, open_lo=True)
        ),
        blend=BlendSpec(
            opacity=section.section("blend", ("opacity",)).float_range(
                "opacity", (0.1, 0.2), 0.0, 1.0, open_lo=True
            )
        ),
        reflection=ReflectionSpec(
            modes=reflection.choices("modes", ("ghost", "blur", "focus"), ("ghost", "blur", "focus")),
            weight=reflection.float_range("weight", (0.2, 0.4), 0.0, 1.0, open_lo=True),
        ),
        warp=WarpSpec(
            strength=warp.float_range("strength", (0.5, 1.0), 0.0, 4.0, open_lo=True),
            grid=warp.int("grid", 4, 2, 32),
        ),
    )


_TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "schedule",
    "label_smoothing",
    "channels_last",
    "bf16",
    "adversarial",
    "adaptive",
)


def _bf16(section: Section) -> bool | str:
    """``bf16``: true, false or ``auto`` (bf16 autocast where the device computes it natively)."""
    value = section.data.get("bf16", True)
    if value != "auto" and not isinstance(value, bool):
        raise section.fail("bf16", f"must be true, false or auto, got {value!r}")
    return value


def _training(section: Section) -> TrainingSpec:
    adv = section.section("adversarial", ("probability", "methods", "eps", "ratio", "pgd_iterations"))
    adaptive = section.section("adaptive", ("weight", "variant", "layer"))
    layer = adaptive.get("layer")
    if layer is not None and (not isinstance(layer, str) or not layer):
        raise adaptive.fail("layer", f"must be a module name or block:K, got {layer!r}")
    return TrainingSpec(
        epochs=section.int("epochs", 12, 1, 1000),
        batch_size=section.int("batch_size", 64, 1, 4096),
        lr=section.float("lr", 3e-3, 0.0, 10.0, open_lo=True),
        optimizer=section.choice("optimizer", "adamw", ("adamw", "sgd")),
        weight_decay=section.float("weight_decay", 5e-4, 0.0, 1.0),
        schedule=section.choice("schedule", "onecycle", ("onecycle", "cosine", "constant")),
        label_smoothing=section.float("label_smoothing", 0.0, 0.0, 0.99),
        channels_last=section.bool("channels_last", True),
        bf16=_bf16(section),
        adversarial=AdversarialSpec(
            probability=adv.float("probability", 0.0, 0.0, 1.0),
            methods=adv.choices("methods", ("pgd", "fbf"), ("pgd", "fbf")),
            eps=adv.numbers("eps", (4.0, 8.0, 16.0), 0.0, 255.0),
            ratio=adv.numbers("ratio", (0.1, 0.3), 0.0, 1.0),
            pgd_iterations=adv.ints("pgd_iterations", (1, 3, 7), 1, 100),
        ),
        adaptive=AdaptiveSpec(
            weight=adaptive.float("weight", 0.0, 0.0, 1e6),
            variant=adaptive.choice("variant", "moments", ("moments", "mse")),
            layer=layer,
        ),
    )


def _quality(section: Section) -> QualitySpec:
    return QualitySpec(
        min_clean_accuracy=section.float("min_clean_accuracy", 0.9, 0.0, 1.0),
        min_attack_success_rate=section.float("min_attack_success_rate", 0.9, 0.0, 1.0),
        attempts=section.int("attempts", 3, 1, 20),
    )
