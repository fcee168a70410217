"""Seconds-fast designs for the EX-RAY study tests (repair, adaptive, semantic)."""

from typing import Any

from tests.zoo.conftest import micro_spec

#: ABS + EX-RAY at a budget that runs in seconds on the micro models.
FAST_SCAN = {
    "layer": "block:1",
    "precision": "fp32",
    "patience": 5,
    "scanner_options": {"epochs": 2, "top_n_neurons": 1},
}


def study_zoo(clean: int, trojaned: int, **triggers: Any) -> dict[str, Any]:
    """The micro zoo spec (16×16, 3 classes, one epoch) with four examples per class and ``triggers``."""
    return micro_spec(
        models={"clean": clean, "trojaned": trojaned},
        triggers={"types": ["polygon"], "source_modes": [1], **triggers},
        data={
            "train_per_class": 20,
            "test_per_class": 10,
            "attack_per_class": 10,
            "examples_per_class": [4, 4],
        },
    )
