"""SDRM study specs (issue 6, spec §6): a validated description of which backdoored models to train with
and without the SDRM regulariser and how to measure them.

A spec is a YAML or JSON mapping. Unknown keys are rejected at every level (with the key's dotted path and
the allowed keys); values are type- and range-checked. Schema, with defaults::

    name: <file stem>
    seed: 0                                   # every random choice derives from it
    data:                                     # named data sources (at least one)
      <name>: {source: signs | digits,        # synthetic traffic signs, or scikit-learn digits in colour
               classes: 10,                   # signs only (digits always have 10)
               train_per_class: 300, test_per_class: 100, image_size: 32,
               options: {}}                   # AugmentOptions (signs) / DigitsOptions (digits) overrides
    architectures:                            # named registry models (at least one)
      <name>: {name: <registry name>, kwargs: {},
               training: {}, sdrm: {}}        # this model's overrides of the global sections
    attacks:                                  # named attacks (at least one)
      <name>: {kind: badnets | blended | filter | warp, target_class: 0, fraction: 0.1,
               source_classes: null, clean_label: false, options: {},   # see exray.attacks.catalog
               poisoning: static}             # or redrawn: each epoch, each source image w.p. fraction
    runs: all                                 # or a list of [data, architecture, attack] triples
    training: {}                              # exray.train.TrainConfig fields
    sdrm: {}                                  # exray.attacks.SDRMConfig fields except target_class
                                              # (levels: module names; default the last 3 stage outputs)
    evaluation: {max_per_group: 100, projections: 128, batch_size: 256}
    detectors:
      activation_clustering: {}               # ActivationClustering options
      spectral_signatures: {poison_rate: auto}   # SpectralSignatures options; see below
      scan: {}                                # SCAn options

``runs: all`` is every (data, architecture, attack) combination. Each run trains a regular (RBT) and an
SDRM model with the same seed on the same poisoned data. ``spectral_signatures.poison_rate: auto`` sets ε
so that the removal budget ⌊1.5·ε·n⌋ of the target class equals its number of poisoned samples (an oracle
budget, the best case for the defence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.attacks.catalog import AttackRecipe
from exray.attacks.sdrm import SDRMConfig
from exray.data.digits import NUM_CLASSES as DIGIT_CLASSES
from exray.data.digits import DigitsOptions
from exray.data.signs import PALETTE, SHAPES
from exray.data.synth import AugmentOptions
from exray.detectors import ActivationClustering, SCAn, SpectralSignatures
from exray.errors import ConfigError
from exray.models import build_model
from exray.models.registry import check_buildable
from exray.specfile import MAX_SEED, Section, built, check_name, load_spec_file, named_mapping
from exray.train import TrainConfig

SOURCES: tuple[str, ...] = ("signs", "digits")
_MAX_SIGN_CLASSES = len(SHAPES) * len(PALETTE)


KIND = "sdrm spec"  # how errors name the file


def _section(data: Any, path: str, allowed: Sequence[str], required: Sequence[str] = ()) -> Section:
    return Section(data, path, allowed, kind=KIND, required=required)


def _named(data: Any, path: str) -> Mapping[str, Any]:
    return named_mapping(data, path, KIND)


def _wrap(path: str, build: Any, /, *args: Any, **kwargs: Any) -> Any:
    return built(KIND, path, build, *args, **kwargs)


@dataclass(frozen=True)
class DataSpec:
    """One data source: "signs" (:mod:`exray.data.synth`) or "digits" (:mod:`exray.data.digits`)."""

    name: str
    source: str
    classes: int
    train_per_class: int
    test_per_class: int
    image_size: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "classes": self.classes,
            "train_per_class": self.train_per_class,
            "test_per_class": self.test_per_class,
            "image_size": self.image_size,
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class ArchitectureSpec:
    """A registry model: ``architecture`` built with ``kwargs``. ``training`` / ``sdrm``: this model's
    full training and SDRM settings when the spec overrides the global ones for it (else ``None``)."""

    name: str
    architecture: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    training: TrainConfig | None = None
    sdrm: SDRMConfig | None = None

    def build(self, num_classes: int) -> Any:
        return build_model(self.architecture, num_classes, **dict(self.kwargs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.architecture,
            "kwargs": dict(self.kwargs),
            "training": None if self.training is None else self.training.to_dict(),
            "sdrm": None if self.sdrm is None else self.sdrm.to_dict(),
        }


@dataclass(frozen=True)
class EvaluationSpec:
    """Distance measurement: at most ``max_per_group`` test samples per group (spec §6.5: 100),
    ``projections`` sliced-Wasserstein directions, feature-extraction ``batch_size``."""

    max_per_group: int = 100
    projections: int = 128
    batch_size: int = 256

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_per_group": self.max_per_group,
            "projections": self.projections,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class DetectorSpec:
    """Options of the three detectors; ``ss_auto_rate`` is ``poison_rate: auto`` (oracle budget)."""

    activation_clustering: Mapping[str, Any] = field(default_factory=dict)
    spectral_signatures: Mapping[str, Any] = field(default_factory=dict)
    scan: Mapping[str, Any] = field(default_factory=dict)
    ss_auto_rate: bool = True

    def to_dict(self) -> dict[str, Any]:
        ss = dict(self.spectral_signatures)
        if self.ss_auto_rate:
            ss["poison_rate"] = "auto"
        return {
            "activation_clustering": dict(self.activation_clustering),
            "spectral_signatures": ss,
            "scan": dict(self.scan),
        }


@dataclass(frozen=True)
class Run:
    """One configured (data, architecture, attack) combination."""

    data: str
    architecture: str
    attack: str

    @property
    def label(self) -> str:
        return f"{self.data}-{self.architecture}-{self.attack}"


@dataclass(frozen=True)
class StudySpec:
    """A validated SDRM study (see the module docstring)."""

    name: str
    seed: int
    data: Mapping[str, DataSpec]
    architectures: Mapping[str, ArchitectureSpec]
    attacks: Mapping[str, AttackRecipe]
    runs: tuple[Run, ...]
    training: TrainConfig
    sdrm: SDRMConfig
    evaluation: EvaluationSpec
    detectors: DetectorSpec

    def training_for(self, architecture: str) -> TrainConfig:
        """The training settings of ``architecture`` (its overrides merged over the global ones)."""
        return self.architectures[architecture].training or self.training

    def sdrm_for(self, architecture: str) -> SDRMConfig:
        """The SDRM settings of ``architecture`` (its overrides merged over the global ones)."""
        return self.architectures[architecture].sdrm or self.sdrm

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "data": {k: v.to_dict() for k, v in self.data.items()},
            "architectures": {k: v.to_dict() for k, v in self.architectures.items()},
            "attacks": {k: v.to_dict() for k, v in self.attacks.items()},
            "runs": [[r.data, r.architecture, r.attack] for r in self.runs],
            "training": self.training.to_dict(),
            "sdrm": self.sdrm.to_dict(),
            "evaluation": self.evaluation.to_dict(),
            "detectors": self.detectors.to_dict(),
        }


def _data(name: str, raw: Any) -> DataSpec:
    path = f"data.{name}"
    d = _section(
        raw,
        path,
        ("source", "classes", "train_per_class", "test_per_class", "image_size", "options"),
        ("source",),
    )
    source = d.data["source"]
    if source not in SOURCES:
        raise ConfigError(f"sdrm spec: {path + '.source'!r} must be one of {list(SOURCES)}, got {source!r}")
    if source == "digits":
        classes = d.int("classes", DIGIT_CLASSES, DIGIT_CLASSES, DIGIT_CLASSES)
    else:
        classes = d.int("classes", 10, 3, _MAX_SIGN_CLASSES)
    options = d.get("options", {}) or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"sdrm spec: {path + '.options'!r} must be a mapping")
    _wrap(f"{path}.options", (DigitsOptions if source == "digits" else AugmentOptions).from_dict, options)
    return DataSpec(
        name=name,
        source=source,
        classes=classes,
        train_per_class=d.int("train_per_class", 300, 2, 100_000),
        test_per_class=d.int("test_per_class", 100, 1, 100_000),
        image_size=d.int("image_size", 32, 8, 256),
        options=dict(options),
    )


def _settings(raw: Any, path: str) -> dict[str, Any]:
    value = {} if raw is None else raw
    if not isinstance(value, Mapping):
        raise ConfigError(f"sdrm spec: {path!r} must be a mapping")
    return dict(value)


def _sdrm_config(values: Mapping[str, Any], path: str) -> SDRMConfig:
    if "target_class" in values:
        raise ConfigError(f"sdrm spec: '{path}.target_class' is set from each attack's target_class")
    return _wrap(path, SDRMConfig.from_dict, values)


def _architecture(
    name: str, raw: Any, training: Mapping[str, Any], sdrm: Mapping[str, Any]
) -> ArchitectureSpec:
    path = f"architectures.{name}"
    a = _section(raw, path, ("name", "kwargs", "training", "sdrm"), ("name",))
    kwargs = _settings(a.get("kwargs"), f"{path}.kwargs")
    own_training = _settings(a.get("training"), f"{path}.training")
    own_sdrm = _settings(a.get("sdrm"), f"{path}.sdrm")
    spec = ArchitectureSpec(
        name,
        str(a.data["name"]),
        kwargs,
        _wrap(f"{path}.training", TrainConfig.from_dict, {**training, **own_training})
        if own_training
        else None,
        _sdrm_config({**sdrm, **own_sdrm}, f"{path}.sdrm") if own_sdrm else None,
    )
    # unknown architectures, keyword arguments or sizes fail here, before anything is allocated
    _wrap(path, check_buildable, spec.architecture, 10, dict(spec.kwargs))
    return spec


def _attack(name: str, raw: Any) -> AttackRecipe:
    path = f"attacks.{name}"
    a = _section(
        raw,
        path,
        ("kind", "target_class", "fraction", "source_classes", "clean_label", "options", "poisoning"),
        ("kind",),
    )
    values = dict(a.data)
    values["options"] = values.get("options") or {}
    return _wrap(path, AttackRecipe, **values)


def _runs(
    raw: Any, data: Mapping[str, Any], archs: Mapping[str, Any], attacks: Mapping[str, Any]
) -> tuple[Run, ...]:
    if raw == "all":
        return tuple(Run(d, a, k) for d in data for a in archs for k in attacks)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            "sdrm spec: 'runs' must be 'all' or a non-empty list of [data, architecture, attack]"
        )
    runs = []
    for i, item in enumerate(raw):
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise ConfigError(f"sdrm spec: 'runs[{i}]' must be [data, architecture, attack], got {item!r}")
        for value, known, what in zip(item, (data, archs, attacks), ("data", "architecture", "attack")):
            if not isinstance(value, str) or value not in known:
                raise ConfigError(
                    f"sdrm spec: 'runs[{i}]' names unknown {what} {value!r}; known: {sorted(known)}"
                )
        runs.append(Run(*item))
    if len(set(runs)) != len(runs):
        raise ConfigError("sdrm spec: 'runs' lists a combination twice")
    return tuple(runs)


_DETECTORS = {
    "activation_clustering": ActivationClustering,
    "spectral_signatures": SpectralSignatures,
    "scan": SCAn,
}


def _detectors(raw: Any) -> DetectorSpec:
    d = _section(raw, "detectors", tuple(_DETECTORS))
    options = {}
    for key in _DETECTORS:
        value = d.get(key, {}) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"sdrm spec: 'detectors.{key}' must be a mapping")
        options[key] = dict(value)
    ss = options["spectral_signatures"]
    auto = ss.get("poison_rate", "auto") == "auto"
    if auto:
        ss.pop("poison_rate", None)
    for key, cls in _DETECTORS.items():
        _wrap(f"detectors.{key}", cls, **options[key])
    return DetectorSpec(options["activation_clustering"], ss, options["scan"], auto)


def parse_spec(data: Any, *, default_name: str = "sdrm-study") -> StudySpec:
    """Validate a spec mapping (see the module docstring) into a :class:`StudySpec`."""
    top = _section(
        data,
        "",
        (
            "name",
            "seed",
            "data",
            "architectures",
            "attacks",
            "runs",
            "training",
            "sdrm",
            "evaluation",
            "detectors",
        ),
        ("data", "architectures", "attacks"),
    )
    name = top.get("name", default_name)
    check_name(top, name)
    training = _settings(top.get("training"), "training")
    sdrm = _settings(top.get("sdrm"), "sdrm")
    data = {n: _data(n, v) for n, v in _named(top.data["data"], "data").items()}
    archs = {
        n: _architecture(n, v, training, sdrm)
        for n, v in _named(top.data["architectures"], "architectures").items()
    }
    attacks = {n: _attack(n, v) for n, v in _named(top.data["attacks"], "attacks").items()}
    runs = _runs(top.get("runs", "all"), data, archs, attacks)
    for run in runs:
        attack, classes = attacks[run.attack], data[run.data].classes
        _wrap(f"attacks.{run.attack}", attack.build, classes, 0)
    evaluation = _section(
        top.get("evaluation", {}) or {}, "evaluation", ("max_per_group", "projections", "batch_size")
    )
    return StudySpec(
        name=name,
        seed=top.int("seed", 0, 0, MAX_SEED),
        data=data,
        architectures=archs,
        attacks=attacks,
        runs=runs,
        training=_wrap("training", TrainConfig.from_dict, training),
        sdrm=_sdrm_config(sdrm, "sdrm"),
        evaluation=EvaluationSpec(
            max_per_group=evaluation.int("max_per_group", 100, 2, 1_000_000),
            projections=evaluation.int("projections", 128, 1, 100_000),
            batch_size=evaluation.int("batch_size", 256, 1, 100_000),
        ),
        detectors=_detectors(top.get("detectors", {}) or {}),
    )


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a ``.yaml``/``.yml``/``.json`` study spec (its name defaults to the file stem)."""
    return load_spec_file(path, "study spec", parse_spec)
