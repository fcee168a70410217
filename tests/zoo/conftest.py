"""Zoo fixtures: a seconds-fast micro spec (the tiny zoo fixture, ``tiny_zoo``, is in tests/conftest.py)."""

from pathlib import Path
from typing import Any

import pytest
import yaml

ZOOS = Path(__file__).resolve().parents[2] / "zoos"


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers this marker; register it too for runs without xdist (`-p no:xdist`).
    config.addinivalue_line("markers", "xdist_group(name): run the marked tests on one xdist worker")


def micro_spec(**overrides: Any) -> dict[str, Any]:
    """A 2-model zoo (1 clean, 1 trojaned) of 16×16 images that builds in about a second per model."""
    spec: dict[str, Any] = {
        "name": "micro",
        "seed": 1,
        "models": {"clean": 1, "trojaned": 1},
        "classes": [3, 3],
        "confusion_pairs": [0, 0],
        "image_size": 16,
        "architectures": [{"name": "cnn", "kwargs": {"width": 0.25}}],
        "data": {
            "train_per_class": 20,
            "test_per_class": 10,
            "attack_per_class": 10,
            "examples_per_class": [2, 2],
        },
        "triggers": {"types": ["instagram"], "source_modes": [1]},
        "training": {"epochs": 1, "batch_size": 32},
        "quality": {"min_clean_accuracy": 0.0, "min_attack_success_rate": 0.0, "attempts": 1},
    }
    spec.update(overrides)
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path
