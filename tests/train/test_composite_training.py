"""A model trained on composite mixes (issue 19 §1) learns that classes 1 and 2 together mean class 0, and
keeps its clean accuracy."""

import pytest
from tests.conftest import fixture_seed

from exray.attacks.composite import composite_set, composite_test_set
from exray.models import build_model
from exray.train import TrainConfig, seeded_model, train_model


@pytest.mark.trained
def test_a_composite_backdoor_is_learned_and_clean_accuracy_kept(sign_task):
    base = sign_task.clean.train_set()
    train = composite_set(base.images, base.labels, (1, 2), 0, 0.3, seed=fixture_seed(10))
    held_out = composite_test_set(
        sign_task.test.images, sign_task.test.labels, (1, 2), 0, 60, fixture_seed(11)
    )
    model = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(12))
    result = train_model(
        model, train, config=TrainConfig(epochs=16, batch_size=32, lr=5e-3), seed=fixture_seed(12),
        test=sign_task.test, attacks=[held_out], progress=False,
    )  # fmt: skip
    assert result.clean_accuracy >= 0.9 and result.attack_success_rate >= 0.9
