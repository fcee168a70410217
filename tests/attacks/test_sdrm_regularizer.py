"""The SDRM regulariser (spec §6.1): the summed per-level MMD of clean target-class vs poisoned rows, its
options, its hooks during training (removed, counted once), and its effect on a small training run."""

import dataclasses

import pytest
import torch
from tests.conftest import fixture_seed

from exray.attacks import AttackRecipe, SDRMConfig, SDRMRegularizer, poison_images, triggered_set
from exray.data.datasets import render_train_test
from exray.data.signs import draw_classes
from exray.errors import ConfigError, InputError, LayerError
from exray.metrics import mmd
from exray.models import build_model, capture
from exray.train import Batch, EvalSet, LossTerm, TrainConfig, seeded_model, train_model
from exray.utils import torch_generator


def _features(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch_generator(seed)
    return {"a": torch.randn(n, 2, 3, 3, generator=g), "b": torch.randn(n, 5, generator=g)}


# Rows: 0-3 clean target (class 0), 4-5 poisoned (true class 1 → 0), 6-7 clean class 1, 8 clean class 2.
LABELS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2])
TRUE = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2])
POISONED = torch.tensor([False, False, False, False, True, True, False, False, False])


def test_penalty_is_the_sum_over_levels_of_the_mmd_between_the_groups():
    f = _features(9)
    reg = SDRMRegularizer(("a", "b"), target_class=0)
    expected = mmd(f["a"][:4], f["a"][4:6]) + mmd(f["b"][:4], f["b"][4:6])
    torch.testing.assert_close(reg.penalty(LABELS, TRUE, POISONED, f), expected)
    # Derived targets (the labels of the poisoned rows) give the same groups.
    torch.testing.assert_close(SDRMRegularizer(("a", "b")).penalty(LABELS, TRUE, POISONED, f), expected)
    unbiased = SDRMRegularizer(("b",), target_class=0, estimator="unbiased", kernel_num=3, kernel_mul=1.5)
    torch.testing.assert_close(
        unbiased.penalty(LABELS, TRUE, POISONED, f),
        mmd(f["b"][:4], f["b"][4:6], estimator="unbiased", kernel_num=3, kernel_mul=1.5),
    )


def test_penalty_is_zero_when_a_group_is_missing():
    f = _features(9)
    reg = SDRMRegularizer(("a",), target_class=0)
    assert float(reg.penalty(LABELS, TRUE, torch.zeros(9, dtype=torch.bool), f)) == 0.0
    assert float(reg.penalty(LABELS[4:], TRUE[4:], POISONED[4:], {"a": f["a"][4:]})) == 0.0
    assert float(SDRMRegularizer(("a",), target_class=2).penalty(LABELS, TRUE, POISONED, f)) == 0.0
    # The U-statistic needs two samples per group: one poisoned row gives 0.
    one = POISONED.clone()
    one[5] = False
    unbiased = SDRMRegularizer(("a",), target_class=0, estimator="unbiased")
    assert float(unbiased.penalty(LABELS, TRUE, one, f)) == 0.0


def test_clean_label_poison_is_never_counted_as_clean():
    # Clean-label poison: true label = training label = target; it must stay in the poisoned group.
    f = _features(6)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    poisoned = torch.tensor([False, False, True, True, False, False])
    reg = SDRMRegularizer(("b",))
    torch.testing.assert_close(reg.penalty(labels, labels, poisoned, f), mmd(f["b"][:2], f["b"][2:4]))


def test_gradients_reach_the_features_of_both_groups_only():
    f = {k: v.requires_grad_(True) for k, v in _features(9).items()}
    SDRMRegularizer(("a", "b"), target_class=0).penalty(LABELS, TRUE, POISONED, f).backward()
    grad = f["b"].grad.abs().sum(dim=1)
    assert (grad[:6] > 0).all() and (grad[6:] == 0).all()


def test_called_as_a_loss_term_it_reads_the_batch_and_checks_its_levels():
    f = _features(9)
    batch = Batch(torch.zeros(9, 3, 4, 4), LABELS, TRUE, POISONED, torch.zeros(9, dtype=torch.bool), None)
    reg = SDRMRegularizer(("a",), target_class=0)
    torch.testing.assert_close(reg(batch, f), reg.penalty(LABELS, TRUE, POISONED, f))
    with pytest.raises(InputError, match="no features"):
        SDRMRegularizer(("zzz",))(batch, f)


@pytest.mark.parametrize(
    "options",
    [
        {"weight": -0.1},
        {"weight": "0.1"},
        {"levels": "layer4"},
        {"levels": ()},
        {"levels": ("a", "a")},
        {"num_levels": 0},
        {"mode": "first"},
        {"target_class": -1},
        {"estimator": "v"},
        {"kernel_num": 0},
        {"kernel_mul": 0.0},
    ],
)
def test_invalid_options_raise(options):
    with pytest.raises(ConfigError):
        SDRMConfig(**options)


def test_config_round_trip_and_unknown_keys():
    config = SDRMConfig(weight=0.3, levels=("layer3", "layer4"), mode="last", target_class=2)
    assert SDRMConfig.from_dict(config.to_dict()) == config
    assert SDRMConfig.from_dict({"levels": "layer4"}).levels == ("layer4",)
    with pytest.raises(ConfigError, match="unknown SDRM options"):
        SDRMConfig.from_dict({"lambda": 0.1})
    term = SDRMConfig().loss_term(build_model("resnet18", 3, width=0.125), torch.rand(1, 3, 32, 32))
    assert isinstance(term, LossTerm)
    assert term.layers == ("layer2", "layer3", "layer4") and term.weight == 0.1 and term.name == "sdrm"


# ---- training with the term: hooks and effect ----


@pytest.fixture(scope="module")
def badnets_task():
    """3 sign classes, 120 training images each, a 4-pixel patch planted 1,2 → 0 (renders in ~1 s)."""
    train, test = render_train_test(draw_classes(3, 0), 120, 60, seed=fixture_seed(5), size=32)
    attack = AttackRecipe("badnets", fraction=0.2).build(3, seed=fixture_seed(0))
    poisoned = poison_images(train.images, train.labels, [attack], seed=fixture_seed(1), masks=train.masks)
    return (
        poisoned,
        EvalSet(test.images, test.labels),
        triggered_set(test.images, test.labels, attack),
        attack,
    )


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_training_hooks_fire_once_per_step_and_are_removed(badnets_task):
    poisoned, *_ = badnets_task
    data = poisoned.train_set()
    model = seeded_model(lambda: build_model("cnn", 3, width=0.25), 0)
    config = SDRMConfig(target_class=0)
    inner = config.regularizer(model, data.images[:1])
    fired = {name: 0 for name in inner.levels}
    for name, module in model.named_modules():
        if name in fired:
            module.register_forward_hook(lambda *_args, name=name: fired.__setitem__(name, fired[name] + 1))
    calls = []

    def counting(batch, features):
        calls.append({name: features[name].shape[0] for name in inner.levels})
        assert all(features[name].requires_grad for name in inner.levels)
        return inner(batch, features)

    term = LossTerm(counting, layers=inner.levels, weight=0.1, name="sdrm")
    result = train_model(
        model, data, config=TrainConfig(epochs=1, batch_size=64), loss_terms=[term], progress=False
    )
    steps = -(-len(data) // 64)
    assert len(calls) == steps
    assert fired == {name: steps for name in inner.levels}  # each level module ran once per step
    assert sum(c[inner.levels[0]] for c in calls) == len(data)
    assert result.history[0].terms["sdrm"] > 0
    for module in model.modules():  # only the test's own counting hooks remain
        module._forward_hooks.clear()
    assert _no_hooks(model)


def test_a_reused_module_as_level_is_an_error_and_leaks_no_hook(badnets_task):
    poisoned, *_ = badnets_task
    data = poisoned.train_set()
    model = seeded_model(lambda: build_model("resnet18", 3, width=0.125), 0)
    # BasicBlock.relu runs twice per forward pass (as in torchvision).
    term = SDRMConfig(levels=("layer1.0.relu",), target_class=0).loss_term(model, data.images[:1])
    with pytest.raises(LayerError, match="more than once"):
        train_model(
            model, data, config=TrainConfig(epochs=1, batch_size=64), loss_terms=[term], progress=False
        )
    assert _no_hooks(model)
    with pytest.raises(LayerError, match="more than once"), capture(model, ["layer1.0.relu"]):
        model(data.images[:2])
    assert _no_hooks(model)


def _last_level_mmd(model, levels, clean, triggered):
    with torch.no_grad(), capture(model, levels[-1:]) as seen:
        model.eval()(clean)
        a = seen[levels[-1]].flatten(1)
        model(triggered)
        b = seen[levels[-1]].flatten(1)
    return float(mmd(a.double(), b.double()))


@pytest.mark.trained
def test_sdrm_training_lowers_the_last_level_mmd(badnets_task):
    poisoned, test, attack_set, attack = badnets_task
    data = poisoned.train_set()
    train = TrainConfig(epochs=8, batch_size=64, lr=5e-3)
    config = SDRMConfig(weight=0.5, target_class=attack.target_class)
    clean = test.images[test.labels == attack.target_class][:60]
    triggered = attack_set.images[:60]
    values = {}
    for variant in ("rbt", "sdrm"):
        model = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(0))
        terms = [config.loss_term(model, data.images[:1])] if variant == "sdrm" else []
        result = train_model(
            model,
            data,
            config=train,
            seed=fixture_seed(0),
            test=test,
            attacks=[attack_set],
            loss_terms=terms,
            progress=False,
        )
        levels = config.resolve_levels(model, data.images[:1])
        values[variant] = (_last_level_mmd(model, levels, clean, triggered), result)
    print({k: (v[0], v[1].clean_accuracy, v[1].attack_success_rate) for k, v in values.items()})
    assert values["sdrm"][0] < 0.5 * values["rbt"][0]
    assert values["rbt"][1].attack_success_rate > 0.9
    assert dataclasses.asdict(values["rbt"][1].config) == dataclasses.asdict(values["sdrm"][1].config)
