"""The hidden-trigger attack's parts (Saha et al. AAAI'20; issue 19 §1): the one-to-one pairing, poisons that
stay within the L∞ ball and move towards the stamped sources' features, and a clean-label training set."""

import pytest
import torch
from torch import nn

from exray.attacks.hidden import (
    HiddenTriggerConfig,
    hidden_trigger_poisons,
    hidden_trigger_set,
    hidden_trigger_test_set,
    one_to_one_pairs,
)
from exray.errors import ConfigError, InputError
from exray.triggers import PatchTrigger


def test_pairing_is_one_to_one_closest_pair_first():
    # sources 0..2 (rows) × poisons 0..1 (columns): the global minimum (source 1, poison 0) goes first, then
    # poison 1 takes the closest *remaining* source (2), not source 1 again
    distances = torch.tensor([[5.0, 9.0], [1.0, 2.0], [7.0, 3.0]])
    assert one_to_one_pairs(distances).tolist() == [1, 2]
    with pytest.raises(InputError):
        one_to_one_pairs(torch.zeros(1, 2))


def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_poisons_stay_in_the_ball_and_collide_with_the_stamped_features():
    model = _linear_model()
    targets, sources = torch.rand(6, 3, 8, 8) * 0.5, torch.rand(6, 3, 8, 8) * 0.5 + 0.5
    trigger = PatchTrigger((1.0, 0.0, 1.0), 0.25)
    before = model.state_dict()
    config = HiddenTriggerConfig(epsilon=0.1, steps=200, lr=0.05, batch_size=4)
    _, first_losses = hidden_trigger_poisons(
        model, targets, sources, trigger, HiddenTriggerConfig(steps=1, batch_size=4)
    )
    poisons, losses = hidden_trigger_poisons(model, targets, sources, trigger, config)
    assert poisons.shape == targets.shape and len(losses) == 2  # 6 targets in two batches of 3
    assert (poisons - targets).abs().max() <= 0.1 + 1e-6 and poisons.min() >= 0 and poisons.max() <= 1
    assert all(after < 0.5 * start for after, start in zip(losses, first_losses, strict=True)), (
        losses,
        first_losses,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the extractor is untouched
    again, _ = hidden_trigger_poisons(model, targets, sources, trigger, config)
    assert torch.equal(again, poisons)


def test_bf16_features_make_fp32_poisons_that_collide_as_the_fp32_ones_do(monkeypatch):
    model = _linear_model()
    targets, sources = torch.rand(6, 3, 8, 8) * 0.5, torch.rand(6, 3, 8, 8) * 0.5 + 0.5
    trigger = PatchTrigger((1.0, 0.0, 1.0), 0.25)
    config = HiddenTriggerConfig(epsilon=0.1, steps=200, lr=0.05, batch_size=4)
    _, start = hidden_trigger_poisons(
        model, targets, sources, trigger, HiddenTriggerConfig(steps=1, batch_size=4)
    )
    _, exact = hidden_trigger_poisons(model, targets, sources, trigger, config)
    seen, autocast = [], torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kwargs):
        seen.append(dtype)
        return autocast(device_type, dtype, enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    poisons, fast = hidden_trigger_poisons(
        model,
        targets,
        sources,
        trigger,
        HiddenTriggerConfig(epsilon=0.1, steps=200, lr=0.05, batch_size=4, bf16=True),
    )
    assert torch.bfloat16 in seen and poisons.dtype == torch.float32
    assert (poisons - targets).abs().max() <= 0.1 + 1e-6
    for f, e, s in zip(
        fast, exact, start, strict=True
    ):  # as far from the start as fp32 gets, within bf16's noise
        assert f < 0.5 * s and f <= e + 0.05 * s, (fast, exact, start)
    with pytest.raises(ConfigError, match="bf16"):
        HiddenTriggerConfig(bf16="yes")


def test_the_training_set_is_clean_label():
    model = _linear_model()
    labels = torch.arange(40) % 2
    images = torch.rand(40, 3, 8, 8)
    trigger = PatchTrigger((1.0, 0.0, 1.0), 0.25)
    data = hidden_trigger_set(
        model, images, labels, trigger, source=1, target=0, fraction=0.5,
        config=HiddenTriggerConfig(steps=5, epsilon=0.05), seed=1,
    )  # fmt: skip
    assert int(data.poisoned.sum()) == 10 and (labels[data.poisoned] == 0).all()
    assert torch.equal(data.labels, labels) and torch.equal(data.true_labels, labels)
    changed = (data.images != images).flatten(1).any(1)
    assert not changed[~data.poisoned].any()  # only poisons differ, and only slightly
    assert (data.images - images).abs().max() <= 0.05 + 1e-6
    held_out = hidden_trigger_test_set(images, labels, trigger, 1, 0)
    assert held_out.target_class == 0 and len(held_out.images) == 20
    assert torch.allclose(held_out.images[:, :, -2:, -2:], torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1))


@pytest.mark.parametrize(
    "options",
    [{"epsilon": 0.0}, {"epsilon": 2.0}, {"steps": 0}, {"lr": 0.0}, {"decay": 1.5}, {"batch_size": True},
     {"stop_loss": -1.0}, {"layer": ""}],
)  # fmt: skip
def test_invalid_settings_are_refused(options):
    with pytest.raises(ConfigError):
        HiddenTriggerConfig(**options)


def test_bad_sets_are_refused():
    model, trigger = _linear_model(), PatchTrigger((1.0, 0.0, 1.0), 0.25)
    labels, images = torch.zeros(10, dtype=torch.long), torch.rand(10, 3, 8, 8)
    with pytest.raises(InputError):  # no source image
        hidden_trigger_set(model, images, labels, trigger, source=1, target=0, fraction=0.5)
    with pytest.raises(ConfigError):
        hidden_trigger_set(model, images, labels, trigger, source=0, target=0, fraction=0.5)
    with pytest.raises(InputError):  # fewer sources than poisons
        hidden_trigger_poisons(model, images[:4], images[:2], trigger)
