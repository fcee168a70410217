"""Synthetic penultimate-layer representations for the detector tests.

Each class is a unit-variance Gaussian around its own centre in 64-D; optionally 10 % of class 0 is
"poisoned" by shifting it far (by ``shift``) along one random unit direction — an obvious planted cluster.
"""

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class Planted:
    features: np.ndarray
    labels: np.ndarray
    is_poisoned: np.ndarray

    @property
    def n_poisoned(self) -> int:
        return int(self.is_poisoned.sum())


def make_features(
    seed: int,
    *,
    n_classes: int = 10,
    n_per_class: int = 200,
    dim: int = 64,
    poison_fraction: float = 0.1,
    shift: float = 20.0,
) -> Planted:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    features = centres[labels] + rng.standard_normal((labels.size, dim))
    is_poisoned = np.zeros(labels.size, dtype=bool)
    n_poison = round(poison_fraction * n_per_class)
    if n_poison:
        chosen = rng.choice(n_per_class, n_poison, replace=False)  # class 0 occupies the first rows
        direction = rng.standard_normal(dim)
        features[chosen] += shift * direction / np.linalg.norm(direction)
        is_poisoned[chosen] = True
    return Planted(features, labels, is_poisoned)


def make_heterogeneous(
    seed: int,
    *,
    n_classes: int = 10,
    n_per_class: int = 500,
    n_reference: int = 200,
    dim: int = 128,
    poisoned_share: float = 0.3,
    shift_sigmas: float = 5.0,
) -> tuple[Planted, Planted]:
    """Classes that differ in covariance (per-class, per-dimension scales drawn log-uniform in [0.7, 1.4])
    and a clean reference drawn from the same classes; ``poisoned_share`` of class 0's inspected samples
    shifted by ``shift_sigmas`` of class 0's spread along one random direction. Returns (inspected,
    reference) — the setting of issue 17, where SCAn needs its clean reference."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (n_classes, dim))
    scales = np.exp(rng.uniform(np.log(0.7), np.log(1.4), (n_classes, dim)))

    def draw(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(n_classes), per_class)
        return centres[labels] + rng.standard_normal((labels.size, dim)) * scales[labels], labels

    features, labels = draw(n_per_class)
    reference, reference_labels = draw(n_reference)
    chosen = rng.choice(n_per_class, round(poisoned_share * n_per_class), replace=False)
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    features[chosen] += shift_sigmas * np.sqrt(((direction * scales[0]) ** 2).sum()) * direction
    is_poisoned = np.zeros(labels.size, dtype=bool)
    is_poisoned[chosen] = True
    no_poison = np.zeros(reference_labels.size, dtype=bool)
    return Planted(features, labels, is_poisoned), Planted(reference, reference_labels, no_poison)


@pytest.fixture(scope="session")
def features_factory():
    """:func:`make_features` itself, for tests that need other seeds or shapes."""
    return make_features


@pytest.fixture(scope="session")
def planted10() -> Planted:
    """10 classes × 200 samples, 20 poisoned samples in class 0."""
    return make_features(0)


@pytest.fixture(scope="session")
def clean10() -> Planted:
    """10 clean classes × 200 samples."""
    return make_features(0, poison_fraction=0.0)


@pytest.fixture(scope="session")
def planted5() -> Planted:
    """5 classes × 200 samples, 20 poisoned samples in class 0 (activation clustering is the slowest)."""
    return make_features(1, n_classes=5)


@pytest.fixture(scope="session")
def clean5() -> Planted:
    return make_features(1, n_classes=5, poison_fraction=0.0)
