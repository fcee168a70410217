"""The shared inversion loop: batched candidates equal candidates optimised alone; the Adam it applies is
torch's; steps start where asked; best-so-far and early stops are honoured."""

import pytest
import torch

from exray.errors import ConfigError
from exray.models import build_model
from exray.scanners.abs_inversion import ABSLoss, MaskInversion, label_update
from exray.scanners.activations import ActivationTap, find_preactivation
from exray.scanners.inversion import InversionTask
from exray.scanners.nc_inversion import NCInversion


def _mask_inverter(net, sample, epochs=6, batch_size=4):
    tap = ActivationTap(net, "detectors.1", sample)
    return MaskInversion(
        tap=tap,
        loss=ABSLoss(),
        max_size=8,
        lr=0.3,
        epochs=epochs,
        batch_size=batch_size,
        jitter=0.05,
        step_from=1,
    )


def _tasks(examples):
    # different image counts, so tasks drop out of later chunks at different steps
    return [
        InversionTask(examples[0][:10], target=1, victim=0, neuron=5, seed=11),
        InversionTask(examples[2][:7], target=1, victim=2, neuron=5, seed=12),
        InversionTask(examples[3][:5], target=2, victim=3, neuron=1, seed=13),
    ]


def test_batched_abs_tasks_equal_tasks_run_alone(planted_patch):
    net, examples = planted_patch
    tasks = _tasks(examples)
    inverter = _mask_inverter(net, examples[0][:1])
    together = inverter.run(net, tasks)
    for task, joint in zip(tasks, together):
        alone = inverter.run(net, [task])[0]
        assert joint.info == pytest.approx(alone.info)
        assert joint.best_epoch == alone.best_epoch
        for name in ("mask", "pattern"):
            assert torch.allclose(joint.params[name], alone.params[name], atol=1e-5)
    assert any(o.best_epoch > 0 for o in together)  # it did optimise


def test_batched_nc_tasks_equal_tasks_run_alone(planted_patch):
    net, examples = planted_patch
    tasks = [
        InversionTask(examples[0][:6], target=1, seed=1),
        InversionTask(examples[2][:9], target=3, seed=2),
    ]
    inverter = NCInversion(
        epochs=12, batch_size=4, lr=0.1, betas=(0.5, 0.9), patience=2, early_stop_patience=3
    )
    together = inverter.run(net, tasks)
    for task, joint in zip(tasks, together):
        alone = inverter.run(net, [task])[0]
        assert joint.epochs_run == alone.epochs_run
        assert joint.info == pytest.approx(alone.info)
        assert torch.allclose(joint.params["mask"], alone.params["mask"], atol=1e-5)


def test_the_update_is_torch_adam(planted_patch):
    """One task, one chunk per epoch: parameters after the loop equal torch.optim.Adam on the same loss."""
    net, examples = planted_patch
    task = InversionTask(examples[0][:4], target=1, seed=3)
    # a success bar no epoch can reach: the outcome is the last evaluated parameters
    inverter = NCInversion(epochs=4, batch_size=8, lr=0.1, betas=(0.5, 0.9), success=1.1)
    generators = [torch.Generator().manual_seed(3)]
    params = {k: v.clone().requires_grad_(True) for k, v in inverter.init_params([task], generators).items()}
    optimiser = torch.optim.Adam(params.values(), lr=0.1, betas=(0.5, 0.9))
    for _ in range(3):  # epochs 0..2 step; the last epoch only evaluates
        stamped = inverter.stamp(params, task.images)
        loss = torch.nn.functional.cross_entropy(net(stamped), torch.ones(4, dtype=torch.long))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    outcome = inverter.run(net, [task])[0]
    assert outcome.best_epoch == -1
    assert torch.allclose(outcome.params["mask"], params["mask"].detach()[0], atol=1e-5)
    assert torch.allclose(outcome.params["pattern"], params["pattern"].detach()[0], atol=1e-5)


def test_epoch_zero_only_evaluates_when_steps_start_later(planted_patch):
    net, examples = planted_patch
    task = InversionTask(examples[0][:4], target=1, victim=0, neuron=5, seed=4)
    inverter = _mask_inverter(net, examples[0][:1], epochs=2)  # epoch 0: evaluate; epoch 1: last, evaluate
    start = inverter.init_params([task], [torch.Generator().manual_seed(4)])
    outcome = inverter.run(net, [task])[0]
    assert torch.equal(outcome.params["mask"], start["mask"][0])


def test_label_update_follows_the_spec():
    preds = torch.tensor([0, 0, 0, 2, 2, 3])
    assert label_update(preds, victim=0, sampled=1) == (2, pytest.approx(2 / 6))  # mode is the victim
    assert label_update(torch.tensor([0, 0]), victim=0, sampled=1) == (1, 0.0)  # all victim: sampled
    assert label_update(torch.tensor([4, 4, 1]), victim=0, sampled=1) == (4, pytest.approx(2 / 3))


def test_bad_loop_settings_raise_config_error():
    with pytest.raises(ConfigError):
        NCInversion(epochs=0, batch_size=4, lr=0.1)
    with pytest.raises(ConfigError):
        NCInversion(epochs=3, batch_size=4, lr=0.1, jitter=1.5)


@pytest.mark.parametrize(
    ("arch", "layer", "expected"),
    [
        ("resnet18", "layer3", "layer3.1.relu"),
        ("cnn", "features.4", "features.4.2"),
        ("mobilenetv2", None, None),
    ],
)
def test_preactivation_is_found_generically(arch, layer, expected):
    model = build_model(arch, 10, width=0.25).eval()
    sample = torch.rand(1, 3, 32, 32)
    if layer is None:
        from exray.models.layers import default_layer

        layer = default_layer(model, sample)
    assert find_preactivation(model, layer, sample) == expected
    tap = ActivationTap(model, layer, sample)
    with tap.capture() as seen:
        model(sample)
    assert seen.post is not None
    if expected is not None:
        assert torch.allclose(torch.relu(seen.pre), seen.post)
    else:
        assert seen.pre is None
