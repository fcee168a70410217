"""A classifier trained with the input-aware dynamic backdoor (Nguyen & Tran NeurIPS'20; issue 19 §1) learns
triggers that flip an image to the target, keeps its clean accuracy, and — through the cross-trigger mode —
ignores a trigger made from another image."""

import pytest
from tests.conftest import fixture_seed

from exray.attacks import render_clean_set, render_poisoned
from exray.attacks.input_aware import InputAwareConfig, train_input_aware
from exray.data.signs import draw_classes
from exray.data.synth import SignRenderer
from exray.models import build_model
from exray.train import seeded_model


@pytest.mark.trained
def test_input_aware_backdoor_is_learned_and_the_cross_trigger_mode_makes_it_input_specific():
    """At 16×16, 400 images per class, 40 epochs (about 30 s per training on 2 cores). Measured over task
    seeds 0-2 (2026-12-01): clean 1.0; with the cross mode ASR 0.53-0.82, cross accuracy 0.73-0.84; without
    it ASR 0.82-0.92, cross accuracy 0.45 (another image's trigger flips it too). The paper (CIFAR-10, 600
    epochs): ASR 0.99, cross 0.88; at this scale the attack is learned less far, so the test asserts its
    direction with margins."""
    renderer = SignRenderer(draw_classes(3, 0), size=16)
    train = render_poisoned(renderer, 400, [], seed=fixture_seed(1)).train_set()
    test = render_clean_set(renderer, 50, seed=fixture_seed(2))
    results = {}
    for cross in (0.1, 0.0):
        model = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(12))
        config = InputAwareConfig(epochs=40, mask_epochs=10, batch_size=32, cross_ratio=cross)
        results[cross] = train_input_aware(model, train, config, seed=fixture_seed(12), test=test)
    dynamic, plain = results[0.1], results[0.0]
    assert dynamic.clean_accuracy >= 0.9 and plain.clean_accuracy >= 0.9
    assert dynamic.attack_success_rate >= 0.4 and plain.attack_success_rate >= 0.6
    assert dynamic.cross_accuracy >= 0.65
    assert dynamic.cross_accuracy >= plain.cross_accuracy + 0.15, (
        dynamic.cross_accuracy,
        plain.cross_accuracy,
    )
