"""Training with the adaptive attack's loss (issue 19 §1) narrows what it penalises: at EX-RAY's layer, the
per-channel moments of stamped victim images move toward those of clean target images."""

import pytest
import torch
from tests.conftest import fixture_seed

from exray.attacks import AdaptiveConfig, AdaptiveLoss
from exray.models import build_model, capture
from exray.train import Batch, TrainConfig, seeded_model, train_model


@pytest.mark.trained
def test_the_adaptive_loss_narrows_the_feature_gap_it_penalises(sign_task) -> None:
    data = sign_task.poisoned.train_set()  # magenta square: class 1 → class 0
    config = TrainConfig(epochs=8, batch_size=32, lr=5e-3)

    def gap(model, term):
        with capture(model, list(term.layers)) as out, torch.no_grad():
            logits = model(data.images)
        zeros = torch.zeros(len(data), dtype=torch.bool)
        batch = Batch(data.images, data.labels, data.true_labels, data.poisoned, zeros, logits)
        return float(term.fn(batch, out))

    gaps = {}
    for weight in (0.0, 100.0):
        model = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(7))
        term = AdaptiveConfig(target_class=0, weight=weight).loss_term(model, data.images[:1])
        assert isinstance(term.fn, AdaptiveLoss)
        result = train_model(
            model, data, config=config, seed=fixture_seed(7), loss_terms=[term], test=sign_task.test,
            attacks=[sign_task.attack], progress=False,
        )  # fmt: skip
        gaps[weight] = gap(model, term)
        assert result.attack_success_rate >= 0.6  # the backdoor is still learned (a clean model: <= 0.2)
    assert gaps[100.0] < 0.5 * gaps[0.0]
