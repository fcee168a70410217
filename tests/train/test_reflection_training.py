"""A model trained on reflection-poisoned signs (Refool's ghost model; issue 19 §1) learns the backdoor and
keeps its clean accuracy. (A reflection of the mostly black Hubble field acts as a darkening, which these
classes' fills confuse: ASR ~0.77 after 16 epochs; a textured photograph is what Refool reflects.)"""

import pytest
from tests.conftest import fixture_seed

from exray.attacks import Attack, poison_images, triggered_set
from exray.models import build_model
from exray.train import TrainConfig, seeded_model, train_model
from exray.triggers import ReflectionTrigger


@pytest.mark.trained
def test_a_reflection_backdoor_is_learned_and_clean_accuracy_kept(sign_task):
    base = sign_task.clean.train_set()
    attack = Attack(ReflectionTrigger("immunohistochemistry", "ghost", weight=0.3), (1, 2), 0, 0.5)
    train = poison_images(base.images, base.labels, [attack], seed=fixture_seed(8), num_classes=3).train_set()
    held_out = triggered_set(sign_task.test.images, sign_task.test.labels, attack, name="reflection")
    model = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(9))
    result = train_model(
        model, train, config=TrainConfig(epochs=16, batch_size=32, lr=5e-3), seed=fixture_seed(9),
        test=sign_task.test, attacks=[held_out], progress=False,
    )  # fmt: skip
    assert result.clean_accuracy >= 0.9 and result.attack_success_rate >= 0.9
