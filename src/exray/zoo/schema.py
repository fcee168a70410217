"""The validated form of a zoo spec (spec §7.3.8): one frozen dataclass per section, :class:`ZooSpec`
for the whole. :mod:`exray.zoo.spec` reads spec files into it and documents the keys and defaults."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from exray.data.synth import AugmentOptions
from exray.triggers import INSTAGRAM_FILTERS

TRIGGER_TYPES: tuple[str, ...] = (
    "polygon", "instagram", "color_transform", "patch", "blend", "reflection", "warp",
)  # fmt: skip


@dataclass(frozen=True)
class ArchitectureChoice:
    """A registry architecture, its keyword arguments (e.g. ``width``) and overrides of the ``training``
    section for models of this architecture (any training key but ``adversarial``; e.g. ``bf16: false``
    for architectures that bf16 slows down, see ``benchmarks/bench_zoo.py``)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignSpec:
    """How a model's sign classes are drawn (:func:`exray.data.signs.draw_classes`): ``fills=None`` lets
    classes differ by fill colour; a list of palette colours makes every fill shared by several classes
    that differ by shape and glyph (population v2, issue 16)."""

    fills: tuple[str, ...] | None = None
    colour_cues: bool = True


@dataclass(frozen=True)
class DataSpec:
    train_per_class: int = 300
    test_per_class: int = 100
    attack_per_class: int = 50
    examples_per_class: tuple[int, int] = (10, 20)
    augment: dict[str, Any] = field(default_factory=dict)

    def options(self) -> AugmentOptions:
        return AugmentOptions.from_dict(self.augment)


@dataclass(frozen=True)
class PolygonSpec:
    """``size``: area as a fraction of the sign (TrojAI 2–25 %); ``spatial_probability``: chance of a
    round-4 spatial condition (a quadrant of the sign); ``min_contrast``: minimum RGB distance between the
    polygon colour and the source signs' fill colours ([CHOICE], so a trigger is visible at 32 px)."""

    size: tuple[float, float] = (0.02, 0.25)
    spatial_probability: float = 0.0
    min_contrast: float = 0.25


@dataclass(frozen=True)
class InstagramSpec:
    filters: tuple[str, ...] = tuple(INSTAGRAM_FILTERS)


@dataclass(frozen=True)
class ColorTransformSpec:
    strength: tuple[float, float] = (0.5, 1.0)


@dataclass(frozen=True)
class PatchSpec:
    """``size``: side as a fraction of the image side; colour and corner are random."""

    size: tuple[float, float] = (0.1, 0.25)


@dataclass(frozen=True)
class BlendSpec:
    opacity: tuple[float, float] = (0.1, 0.2)


@dataclass(frozen=True)
class ReflectionSpec:
    """Refool's reflection (``exray.triggers.reflection``): a shipped photograph added by one of ``modes``
    at a weight drawn from ``weight``."""

    modes: tuple[str, ...] = ("ghost", "blur", "focus")
    weight: tuple[float, float] = (0.2, 0.4)


@dataclass(frozen=True)
class WarpSpec:
    """WaNet's warp (``exray.attacks.warp``): a seeded smooth field of ``grid`` × ``grid`` control points at
    a strength drawn from ``strength``."""

    strength: tuple[float, float] = (0.5, 1.0)
    grid: int = 4


@dataclass(frozen=True)
class TriggerSpec:
    types: tuple[str, ...] = ("polygon", "instagram")
    per_model: tuple[int, ...] = (1,)
    source_modes: tuple[Any, ...] = (1, 2, "all")
    shared_source_probability: float = 0.5
    fraction: tuple[float, float] = (0.1, 0.5)
    counter_fraction: tuple[float, float] = (0.0, 0.0)
    polygon: PolygonSpec = field(default_factory=PolygonSpec)
    instagram: InstagramSpec = field(default_factory=InstagramSpec)
    color_transform: ColorTransformSpec = field(default_factory=ColorTransformSpec)
    patch: PatchSpec = field(default_factory=PatchSpec)
    blend: BlendSpec = field(default_factory=BlendSpec)
    reflection: ReflectionSpec = field(default_factory=ReflectionSpec)
    warp: WarpSpec = field(default_factory=WarpSpec)


@dataclass(frozen=True)
class AdversarialSpec:
    """Round-3 adversarial training (spec §7.2): applied to a model with ``probability``; ``eps`` in 1/255."""

    probability: float = 0.0
    methods: tuple[str, ...] = ("pgd", "fbf")
    eps: tuple[float, ...] = (4.0, 8.0, 16.0)
    ratio: tuple[float, ...] = (0.1, 0.3)
    pgd_iterations: tuple[int, ...] = (1, 3, 7)


@dataclass(frozen=True)
class AdaptiveSpec:
    """The adaptive attack against EX-RAY (EX-RAY §4.5, :mod:`exray.attacks.adaptive`) in every trojaned
    model's training: ``weight`` × the feature-matching loss toward its target at ``layer`` (None:
    EX-RAY's default layer); weight 0 (the default) is off."""

    weight: float = 0.0
    variant: str = "moments"
    layer: str | None = None


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    channels_last: bool = True
    bf16: bool | str = True  # or "auto": where the device computes bf16 natively
    adversarial: AdversarialSpec = field(default_factory=AdversarialSpec)
    adaptive: AdaptiveSpec = field(default_factory=AdaptiveSpec)


@dataclass(frozen=True)
class QualitySpec:
    """The quality bar (issue 3): a model below it is retrained from another derived seed, up to
    ``attempts`` times in all, then reported as failed."""

    min_clean_accuracy: float = 0.9
    min_attack_success_rate: float = 0.9
    attempts: int = 3


@dataclass(frozen=True)
class ModelCounts:
    clean: int
    trojaned: int


@dataclass(frozen=True)
class ZooSpec:
    """A validated zoo spec (see the module docstring for the keys and defaults).

    ``parse_spec(spec.to_dict())`` gives back an equal spec.
    """

    name: str
    models: ModelCounts
    seed: int = 0
    classes: tuple[int, int] = (5, 10)
    confusion_pairs: tuple[int, int] = (0, 1)
    image_size: int = 32
    signs: SignSpec = field(default_factory=SignSpec)
    architectures: tuple[ArchitectureChoice, ...] = (ArchitectureChoice("resnet18", {"width": 0.25}),)
    data: DataSpec = field(default_factory=DataSpec)
    triggers: TriggerSpec = field(default_factory=TriggerSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    quality: QualitySpec = field(default_factory=QualitySpec)

    @property
    def num_models(self) -> int:
        return self.models.clean + self.models.trojaned

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: every default filled in, JSON-able (lists for tuples) — except ``signs``,
        left out at its default so that specs written before it existed keep their digests (and their
        built models stay valid)."""
        data = json.loads(json.dumps(asdict(self)))
        if self.signs == SignSpec():
            del data["signs"]
        elif self.signs.colour_cues:  # likewise for specs written before 'colour_cues' existed
            del data["signs"]["colour_cues"]
        if self.training.adaptive == AdaptiveSpec():  # and before 'training.adaptive' existed
            del data["training"]["adaptive"]
        for kind, default in (("reflection", ReflectionSpec()), ("warp", WarpSpec())):  # and these types
            if getattr(self.triggers, kind) == default:
                del data["triggers"][kind]
        return data

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
