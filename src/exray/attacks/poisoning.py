"""Label-specific data poisoning: which samples carry which trigger, and with which label (spec §7.3.7).

An :class:`Attack` is one trigger with its source classes, its target class and its poison fraction
(TrojAI rounds 2–4, spec §7.2): source classes {1, 2, all} → one target, or round-4 one-to-one; a model
may carry two attacks, possibly sharing a source class with different targets. :func:`plan_poisoning` turns
the labels of a clean base set and a list of attacks into a :class:`PoisonPlan`, a pure description of
the poisoned training set — no images are touched here (:mod:`exray.attacks.render` renders it):

* **poison** rows: ``round(fraction · n)`` of the ``n`` base images of the source classes are chosen
  without replacement; a triggered copy of each is *added* with the target label (the base image stays,
  clean, with its true label). Clean-label attacks instead stamp ``round(fraction · n)`` of the
  target class's own images in place and keep their label.
* **counter** rows (``counter_fraction`` > 0): triggered copies that keep their true label, which make a
  trigger conditional (round 4): copies of non-source images for the class condition, and for a polygon
  with a spatial ``region`` also copies of source images stamped in the *opposite* quadrant.

Every row records its base image, its true label, its training label, its trigger and its role, so the
per-sample poison flags (the ground truth of poisoned-sample detectors and the SDRM loss, spec §6) are
exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from exray.errors import ConfigError, InputError
from exray.triggers import PolygonTrigger, Trigger, trigger_from_config
from exray.utils import derive_seed

SourceMode = Literal[1, 2, "all"]
#: The numbers of attacked source classes of TrojAI rounds 2–3 (spec §7.2).
SOURCE_MODES: tuple[SourceMode, ...] = (1, 2, "all")

#: Row roles in a :class:`PoisonPlan`.
ROLE_CLEAN, ROLE_POISON, ROLE_COUNTER = 0, 1, 2

#: The keys an attack adds to its trigger's config in :meth:`Attack.to_config`.
ATTACK_KEYS = frozenset({"source_classes", "target_class", "fraction", "clean_label", "counter_fraction"})

_OPPOSITE_REGION = {
    "top_left": "bottom_right",
    "bottom_right": "top_left",
    "top_right": "bottom_left",
    "bottom_left": "top_right",
}


@dataclass(frozen=True)
class Attack:
    """One trigger planted in a model (spec §7.3.7).

    ``source_classes``: the classes whose triggered images go to ``target_class`` (the target is never a
    source). ``fraction``: the share of the source classes' images that get a poisoned copy (TrojAI: 1–50 %);
    for a clean-label attack, the share of the target class's images stamped in place, labels kept.
    ``counter_fraction``: the share of the other classes' images (and, for a polygon with a spatial region,
    of the source images stamped outside the region) added as triggered copies with their true labels.
    """

    trigger: Trigger
    source_classes: tuple[int, ...]
    target_class: int
    fraction: float
    clean_label: bool = False
    counter_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.trigger, Trigger):
            raise ConfigError(f"an attack needs a Trigger, got {type(self.trigger).__name__}")
        sources = tuple(int(c) for c in self.source_classes)
        object.__setattr__(self, "source_classes", sources)
        if not sources:
            raise ConfigError("an attack needs at least one source class")
        if len(set(sources)) != len(sources) or min(sources) < 0:
            raise ConfigError(f"source classes must be distinct non-negative ints, got {list(sources)}")
        if self.target_class < 0:
            raise ConfigError(f"the target class must be >= 0, got {self.target_class}")
        if self.target_class in sources:
            raise ConfigError(f"the target class {self.target_class} cannot also be a source class")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"the poison fraction must be in (0, 1], got {self.fraction}")
        if not 0.0 <= self.counter_fraction <= 1.0:
            raise ConfigError(f"the counter fraction must be in [0, 1], got {self.counter_fraction}")

    @property
    def spatial_region(self) -> str | None:
        """The round-4 spatial condition of a polygon trigger (a quadrant of the sign), else ``None``."""
        return self.trigger.region if isinstance(self.trigger, PolygonTrigger) else None

    def check_classes(self, num_classes: int) -> None:
        """Raise ConfigError unless every class of the attack is below ``num_classes``."""
        top = max(*self.source_classes, self.target_class)
        if top >= num_classes:
            raise ConfigError(f"attack uses class {top}, but the model has only {num_classes} classes")

    def to_config(self) -> dict[str, Any]:
        """JSON-able ground truth (design §4 ``triggers`` entry): the trigger's full ``to_config()`` keys
        (``type``, …) plus ``source_classes``, ``target_class``, ``fraction``, ``clean_label`` and
        ``counter_fraction``."""
        return {
            **self.trigger.to_config(),
            "source_classes": list(self.source_classes),
            "target_class": self.target_class,
            "fraction": self.fraction,
            "clean_label": self.clean_label,
            "counter_fraction": self.counter_fraction,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Attack:
        """Inverse of :meth:`to_config`: the attack keys are taken out, the rest is the trigger's config."""
        if not isinstance(config, Mapping):
            raise ConfigError(f"an attack config must be a dict, got {type(config).__name__}")
        missing = {"source_classes", "target_class", "fraction"} - set(config)
        if missing:
            raise ConfigError(f"bad attack config: missing {sorted(missing)}")
        trigger = {k: v for k, v in config.items() if k not in ATTACK_KEYS}
        return cls(
            trigger=trigger_from_config(trigger),
            source_classes=tuple(int(c) for c in config["source_classes"]),
            target_class=int(config["target_class"]),
            fraction=float(config["fraction"]),
            clean_label=bool(config.get("clean_label", False)),
            counter_fraction=float(config.get("counter_fraction", 0.0)),
        )


def draw_source_classes(
    mode: SourceMode, num_classes: int, target: int, rng: np.random.Generator
) -> tuple[int, ...]:
    """Source classes for ``target`` by a TrojAI source mode: 1 or 2 random other classes, or all others."""
    others = [c for c in range(num_classes) if c != target]
    if mode == "all":
        return tuple(others)
    if mode not in (1, 2):
        raise ConfigError(f"unknown source mode {mode!r}; known: {list(SOURCE_MODES)}")
    if mode > len(others):
        raise ConfigError(f"source mode {mode} needs at least {mode + 1} classes, got {num_classes}")
    return tuple(sorted(int(c) for c in rng.choice(others, size=mode, replace=False)))


@dataclass(frozen=True)
class PoisonPlan:
    """The poisoned training set as rows over a clean base set (all arrays have one entry per row).

    The first ``num_base`` rows are the base images in order (clean, except clean-label stamps); added
    copies follow. ``base_index``: the base image a row renders. ``labels``: training labels.
    ``true_labels``: the base image's class. ``trigger_index``: index into ``triggers`` or −1.
    ``attack_index``: the attack a triggered row belongs to, or −1. ``roles``: ROLE_CLEAN / ROLE_POISON /
    ROLE_COUNTER.
    """

    num_base: int
    base_index: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray
    trigger_index: np.ndarray
    attack_index: np.ndarray
    roles: np.ndarray
    triggers: tuple[Trigger, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def poisoned(self) -> np.ndarray:
        """Bool per row: carries a planted trigger as a poison sample (the detectors' positives)."""
        return self.roles == ROLE_POISON

    def trigger_of(self, row: int) -> Trigger | None:
        index = int(self.trigger_index[row])
        return None if index < 0 else self.triggers[index]

    def counts(self) -> dict[str, int]:
        """Numbers of base, poisoned and counter rows."""
        return {
            "base": self.num_base,
            "poisoned": int((self.roles == ROLE_POISON).sum()),
            "counter": int((self.roles == ROLE_COUNTER).sum()),
            "total": len(self),
        }


def _count(fraction: float, n: int) -> int:
    return min(n, round(fraction * n))


def plan_poisoning(
    labels: Sequence[int] | np.ndarray,
    attacks: Sequence[Attack],
    seed: int,
    *,
    num_classes: int | None = None,
) -> PoisonPlan:
    """Plan the poisoned training set for a clean base set with ``labels`` (see the module docstring).

    Each attack draws its rows from its own stream ``derive_seed(seed, "attack", a)``, so adding a second
    attack leaves the first one's choices unchanged. Two clean-label attacks never stamp the same image.
    """
    base = np.asarray(labels)
    if base.ndim != 1 or base.size == 0 or not np.issubdtype(base.dtype, np.integer):
        raise InputError(f"labels must be a non-empty 1-D integer array, got shape {base.shape}")
    k = int(num_classes) if num_classes is not None else int(base.max()) + 1
    if base.min() < 0 or base.max() >= k:
        raise InputError(f"labels must be in [0, {k - 1}], got {base.min()}..{base.max()}")
    n = base.size
    triggers: list[Trigger] = []
    trig_base = np.full(n, -1, dtype=np.int64)
    attack_base = np.full(n, -1, dtype=np.int64)
    role_base = np.full(n, ROLE_CLEAN, dtype=np.int8)
    copies: list[
        tuple[np.ndarray, np.ndarray, int, int, int]
    ] = []  # (base rows, labels, trigger, attack, role)

    for a, attack in enumerate(attacks):
        attack.check_classes(k)
        rng = np.random.default_rng(derive_seed(seed, "attack", a))
        triggers.append(attack.trigger)
        t = len(triggers) - 1
        sources = np.isin(base, attack.source_classes)
        if attack.clean_label:
            pool = np.flatnonzero((base == attack.target_class) & (role_base == ROLE_CLEAN))
            chosen = np.sort(rng.choice(pool, size=_count(attack.fraction, pool.size), replace=False))
            trig_base[chosen], attack_base[chosen], role_base[chosen] = t, a, ROLE_POISON
        else:
            pool = np.flatnonzero(sources)
            chosen = np.sort(rng.choice(pool, size=_count(attack.fraction, pool.size), replace=False))
            copies.append((chosen, np.full(chosen.size, attack.target_class), t, a, ROLE_POISON))
        if attack.counter_fraction > 0.0:
            others = np.flatnonzero(~sources & (base != attack.target_class))
            if others.size:
                chosen = np.sort(
                    rng.choice(others, size=_count(attack.counter_fraction, others.size), replace=False)
                )
                copies.append((chosen, base[chosen], t, a, ROLE_COUNTER))
            region = attack.spatial_region
            if region is not None:
                assert isinstance(attack.trigger, PolygonTrigger)
                outside = PolygonTrigger(
                    attack.trigger.vertices,
                    attack.trigger.color,
                    attack.trigger.size,
                    _OPPOSITE_REGION[region],
                )
                triggers.append(outside)
                pool = np.flatnonzero(sources)
                chosen = np.sort(
                    rng.choice(pool, size=_count(attack.counter_fraction, pool.size), replace=False)
                )
                copies.append((chosen, base[chosen], len(triggers) - 1, a, ROLE_COUNTER))

    rows = [np.arange(n)] + [c[0] for c in copies]
    return PoisonPlan(
        num_base=n,
        base_index=np.concatenate(rows).astype(np.int64),
        labels=np.concatenate([base] + [c[1] for c in copies]).astype(np.int64),
        true_labels=base[np.concatenate(rows)].astype(np.int64),
        trigger_index=np.concatenate([trig_base] + [np.full(c[0].size, c[2]) for c in copies]).astype(
            np.int64
        ),
        attack_index=np.concatenate([attack_base] + [np.full(c[0].size, c[3]) for c in copies]).astype(
            np.int64
        ),
        roles=np.concatenate([role_base] + [np.full(c[0].size, c[4]) for c in copies]).astype(np.int8),
        triggers=tuple(triggers),
    )
