"""The input-aware dynamic attack's parts (Nguyen & Tran NeurIPS'20; issue 19 §1): the generators' shapes and
ranges, the mask threshold, stamping, the cross-trigger test's pairing, and the settings' checks."""

import dataclasses

import pytest
import torch

from exray.attacks.input_aware import (
    InputAwareConfig,
    InputAwareTrigger,
    TriggerGenerator,
    evaluate_input_aware,
    train_input_aware,
)
from exray.errors import ConfigError, InputError
from exray.models import runtime
from exray.train import EvalSet, TrainSet


def test_generators_map_images_to_patterns_and_masks_in_the_unit_interval():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    pattern, mask = TriggerGenerator(3, channels=4, steps=2), TriggerGenerator(1, channels=4, steps=2)
    assert pattern(images).shape == (4, 3, 16, 16) and mask(images).shape == (4, 1, 16, 16)
    out = pattern(images)
    assert out.min() > 0 and out.max() < 1


def test_the_threshold_is_the_authors_soft_step():
    values = torch.tensor([0.0, 0.45, 0.5, 0.55, 1.0])
    stepped = TriggerGenerator.threshold(values)
    assert stepped[0] < 1e-4 and stepped[-1] > 1 - 1e-4 and stepped[2] == pytest.approx(0.5, abs=1e-6)
    assert stepped[1] < 0.12 and stepped[3] > 0.88  # tanh(±1)/2 + 1/2


class _Constant(torch.nn.Module):
    def __init__(self, value: float, channels: int) -> None:
        super().__init__()
        self.value, self.channels = value, channels
        self.weight = torch.nn.Parameter(torch.zeros(1))  # something to freeze

    def forward(self, x):
        return torch.full((x.shape[0], self.channels, *x.shape[-2:]), self.value) + 0 * self.weight


def test_stamping_blends_pattern_into_the_image_where_the_mask_is_on():
    images = torch.rand(3, 3, 8, 8)
    on = InputAwareTrigger(_Constant(0.9, 3), _Constant(1.0, 1))  # threshold(1.0) ≈ 1
    off = InputAwareTrigger(_Constant(0.9, 3), _Constant(0.0, 1))
    assert torch.allclose(on.stamp(images), torch.full_like(images, 0.9), atol=1e-4)
    assert torch.allclose(off.stamp(images), images, atol=1e-4)
    with pytest.raises(InputError):
        on.stamp(images, images[:2])


def test_the_cross_trigger_test_never_pairs_an_image_with_itself():
    """Image i is level c_i everywhere but its corner pixel; its trigger writes c_i into the corner. A model
    that says "1" iff the corner equals the rest is flipped by an image's own trigger only, so with a pairing
    that never gives an image its own trigger the cross accuracy is 1."""

    class Corner(torch.nn.Module):
        def forward(self, x):
            hit = (x[:, :, 0, 0] - x[:, :, 1, 1]).abs().amax(1) < 1e-4
            return torch.stack([(~hit).float(), hit.float()], 1)

    class Level(torch.nn.Module):
        def forward(self, x):
            return x[:, :, 1:2, 1:2].expand_as(x).clone()

    class CornerMask(torch.nn.Module):
        def forward(self, x):
            mask = torch.zeros(x.shape[0], 1, *x.shape[-2:])
            mask[:, :, 0, 0] = 1.0
            return mask

    images = torch.linspace(0.1, 0.8, 12).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    images[:, :, 0, 0] += 0.05
    trigger = InputAwareTrigger(Level(), CornerMask())
    test = EvalSet(images, torch.zeros(12, dtype=torch.long))
    for seed in range(5):
        clean, asr, cross = evaluate_input_aware(Corner(), trigger, test, target_class=1, seed=seed)
        assert (clean, asr, cross) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "options",
    [{"backdoor_ratio": 0.0}, {"backdoor_ratio": 0.6, "cross_ratio": 0.5}, {"cross_ratio": -0.1},
     {"backdoor_ratio": 0.01, "batch_size": 32}, {"mask_density": 1.0}, {"epochs": 0}, {"lr_mask": 0.0},
     {"classifier_milestones": (1.5,)}, {"target_class": -1}, {"norm_weight": -1.0}, {"bf16": "yes"}],
)  # fmt: skip
def test_invalid_settings_are_refused(options):
    with pytest.raises(ConfigError):
        InputAwareConfig(**options)


def test_bad_training_sets_are_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 2))
    config = InputAwareConfig(batch_size=10, epochs=1, mask_epochs=1)
    with pytest.raises(InputError):  # 6 is not divisible by 2^2
        train_input_aware(model, TrainSet(torch.rand(40, 3, 6, 6), torch.zeros(40, dtype=torch.long)), config)
    with pytest.raises(InputError):  # fewer than two batches
        train_input_aware(model, TrainSet(torch.rand(10, 3, 8, 8), torch.zeros(10, dtype=torch.long)), config)


def _tiny_task():
    torch.manual_seed(5)
    images = torch.rand(64, 3, 8, 8)
    return TrainSet(images, torch.arange(64) % 2), EvalSet(images[:16], torch.arange(16) % 2)


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    train, test = _tiny_task()
    config = InputAwareConfig(
        batch_size=16, epochs=1, mask_epochs=1, generator_channels=4, backdoor_ratio=0.25
    )
    weights = []
    for _ in range(2):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(3 * 8 * 8, 2))
        model.load_state_dict({k: torch.zeros_like(v) for k, v in model.state_dict().items()})
        torch.manual_seed(123)
        state = torch.random.get_rng_state()
        result = train_input_aware(model, train, config, seed=7, test=test)
        assert torch.equal(torch.random.get_rng_state(), state)  # no global draw escaped
        weights.append([p.detach().clone() for p in model.parameters()])
        assert 0 <= result.attack_success_rate <= 1 and len(result.history) == 2
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_bf16_runs_the_networks_under_autocast_and_auto_follows_the_device(monkeypatch):
    """``bf16=True`` trains the classifier and generators under bf16 autocast (other weights than fp32, still
    finite); ``"auto"`` on a device without native bf16 is the fp32 run, bit for bit."""
    train, test = _tiny_task()
    config = InputAwareConfig(
        batch_size=16, epochs=1, mask_epochs=1, generator_channels=4, backdoor_ratio=0.25
    )

    def weights(bf16):
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)
        )
        torch.manual_seed(3)
        model.load_state_dict({k: torch.randn_like(v) for k, v in model.state_dict().items()})
        train_input_aware(model, train, dataclasses.replace(config, bf16=bf16), seed=7, test=test)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    fp32, bf16 = weights(False), weights(True)
    assert torch.isfinite(bf16).all() and not torch.equal(fp32, bf16)
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    assert torch.equal(weights("auto"), fp32)


def test_settings_that_leave_no_trainable_batch_are_refused():
    with pytest.raises(ConfigError, match="partner"):
        InputAwareConfig(backdoor_ratio=0.6, cross_ratio=0.3)
    labels = torch.arange(64) % 2
    with pytest.raises(InputError, match="divisible"):  # one side fits 2^2, the other does not
        train_input_aware(
            torch.nn.Linear(1, 1), TrainSet(torch.rand(64, 3, 8, 10), labels), InputAwareConfig(batch_size=16)
        )
    _, test = _tiny_task()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    trigger = InputAwareTrigger(TriggerGenerator(3, channels=4), TriggerGenerator(1, channels=4))
    only_target = EvalSet(test.images, torch.zeros(16, dtype=torch.long))
    with pytest.raises(InputError, match="other than the target"):
        evaluate_input_aware(model, trigger, only_target, 0)
