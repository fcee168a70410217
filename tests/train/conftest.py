"""A 3-class, 32×32 sign task with a magenta-square polygon planted in class 1 → class 0 (renders in ~1 s)."""

from dataclasses import dataclass

import pytest
from tests.conftest import fixture_seed

from exray.attacks import Attack, PoisonedDataset, render_attack_set, render_clean_set, render_poisoned
from exray.data.signs import draw_classes
from exray.data.synth import SignRenderer
from exray.train import AttackSet, EvalSet
from exray.triggers import PolygonTrigger


@dataclass(frozen=True)
class SignTask:
    poisoned: PoisonedDataset
    clean: PoisonedDataset
    test: EvalSet
    attack: AttackSet


@pytest.fixture(scope="session")
def sign_task() -> SignTask:
    # The classes are the task's design (no class looks like the magenta trigger, so a clean model is not
    # flipped by it); rebuilds vary the rendered images and the training, not the design.
    renderer = SignRenderer(draw_classes(3, 0), size=32)
    square = PolygonTrigger(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), (1.0, 0.0, 1.0), 0.2)
    attack = Attack(square, (1,), 0, 0.5)
    return SignTask(
        poisoned=render_poisoned(renderer, 100, [attack], seed=fixture_seed(1)),
        clean=render_poisoned(renderer, 100, [], seed=fixture_seed(1)),
        test=render_clean_set(renderer, 50, seed=fixture_seed(2)),
        attack=render_attack_set(renderer, attack, 50, seed=fixture_seed(3)),
    )
