"""A victim that fine-tunes its last layer on hidden-trigger poisons (Saha et al. AAAI'20; issue 19 §1) learns
a backdoor it never saw: stamped source images go to the target, though no training image shows the trigger
and every one keeps its true label."""

import copy

import pytest
import torch
from tests.conftest import fixture_seed

from exray.attacks.hidden import HiddenTriggerConfig, hidden_trigger_set, hidden_trigger_test_set
from exray.models import build_model
from exray.models.hooks import last_to_run
from exray.train import TrainConfig, seeded_model, train_model
from exray.train.loop import attack_success_rate, clean_accuracy
from exray.triggers import PolygonTrigger


def _fine_tune_head(extractor, train, seed):
    """The paper's victim: transfer learning — only the last layer's weights are trained, from the
    extractor's (train_model runs in train mode, so BatchNorm's running statistics still follow the data)."""
    victim = copy.deepcopy(extractor)
    head = last_to_run(victim, train.images[:1], torch.nn.Linear)
    for name, parameter in victim.named_parameters():
        parameter.requires_grad_(name.startswith(f"{head}."))
    train_model(
        victim, train, config=TrainConfig(epochs=20, batch_size=32, lr=5e-3), seed=seed, progress=False
    )
    return victim


@pytest.mark.trained
def test_a_hidden_trigger_backdoor_is_learned_by_fine_tuning_and_clean_accuracy_kept(sign_task):
    """Measured (2026-12-01, Xeon, 1 thread): with the paper's epsilon 16/255 (and 32/255) the poisons'
    feature loss plateaus at 60 % (40 %) of its start on this 32×32 CNN and the victim learns nothing (ASR
    0); at 64/255 the loss falls to 2-6 % and the ASR over task seeds 0-4 is 0.38-0.98 (control 0-0.04).
    The attack needs the larger budget at this scale; the test uses it and asserts a margin over the
    control, a victim fine-tuned the same way on the clean set."""
    base = sign_task.clean.train_set()
    extractor = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(12))
    train_model(
        extractor, base, config=TrainConfig(epochs=12, batch_size=32, lr=5e-3), seed=fixture_seed(12),
        progress=False,
    )  # fmt: skip
    square = PolygonTrigger(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), (1.0, 0.0, 1.0), 0.25)
    config = HiddenTriggerConfig(epsilon=64 / 255, steps=300, lr=0.1)
    poisoned = hidden_trigger_set(
        extractor, base.images, base.labels, square, 1, 0, 0.5, config, seed=fixture_seed(13)
    )
    held_out = hidden_trigger_test_set(
        sign_task.test.images, sign_task.test.labels, square, 1, 0, seed=fixture_seed(14)
    )
    victim = _fine_tune_head(extractor, poisoned, fixture_seed(15))
    control = _fine_tune_head(extractor, base, fixture_seed(15))
    asr, control_asr = attack_success_rate(victim, held_out), attack_success_rate(control, held_out)
    assert clean_accuracy(victim, sign_task.test) >= 0.9
    assert asr >= control_asr + 0.25, (asr, control_asr)
