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
