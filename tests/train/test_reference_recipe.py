"""The SDRM reference recipe's training pieces (issue 17 §3): the multistep schedule, crop/flip
augmentation, poisoning re-drawn every epoch; and the config's backward-compatible dictionary."""

import pytest
import torch
from torch import nn

from exray.errors import ConfigError, InputError
from exray.train import LossTerm, PoisonRedraw, TrainConfig, TrainSet, train_model
from exray.train.config import augment_batch, build_optimizer, build_scheduler


def test_multistep_decays_by_gamma_at_the_milestone_epochs():
    # The reference: 80 epochs, lr 0.01, x0.1 at epochs 40 and 60.
    config = TrainConfig(epochs=80, lr=0.01, optimizer="sgd", schedule="multistep", nesterov=False)
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, config)
    assert optimizer.param_groups[0]["nesterov"] is False
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=3)
    lrs = []
    for _ in range(80 * 3):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[40 * 3 - 1] == pytest.approx(0.01)
    assert lrs[40 * 3] == pytest.approx(0.001) and lrs[60 * 3 - 1] == pytest.approx(0.001)
    assert lrs[60 * 3] == pytest.approx(0.0001) and lrs[-1] == pytest.approx(0.0001)


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    config = TrainConfig(augment="crop", crop_padding=2)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, config, gen)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    windows = [padded[:, :, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
    for b in range(2):  # each sample is one of the 25 windows of its own padded image
        assert any(torch.equal(out[b], w[b]) for w in windows)
    assert not torch.equal(augment_batch(x, config, gen), out) or not torch.equal(
        augment_batch(x, config, gen), out
    )
    assert augment_batch(x, TrainConfig(), gen) is x


def test_crop_flip_with_no_padding_is_the_image_or_its_mirror():
    x = torch.rand(64, 3, 4, 4)
    out = augment_batch(x, TrainConfig(augment="crop_flip", crop_padding=0), torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54  # about half flipped


def _redraw_set(n=400, p=0.1):
    images = torch.zeros(n, 3, 4, 4)
    labels = torch.arange(n) % 4
    rows = torch.nonzero(labels != 0).flatten()
    triggered = torch.ones(rows.numel(), 3, 4, 4)
    return TrainSet(images, labels, redraw=PoisonRedraw(rows, triggered, p, 0)), rows


def test_poisoning_is_redrawn_every_epoch():
    data, _ = _redraw_set()
    gen = torch.Generator().manual_seed(0)
    first, second = data.epoch(data.images, gen), data.epoch(data.images, gen)
    for epoch in (first, second):
        assert 10 < int(epoch.poisoned.sum()) < 50  # ~ 0.1 x 300 eligible rows
        assert bool((epoch.labels[epoch.poisoned] == 0).all())
        assert bool((epoch.images[epoch.poisoned] == 1).all()) and bool(
            (epoch.images[~epoch.poisoned] == 0).all()
        )
        assert torch.equal(epoch.true_labels, data.labels)
        assert not bool(epoch.poisoned[data.labels == 0].any())  # the target class is never a source
    assert not torch.equal(first.poisoned, second.poisoned)
    assert int(data.poisoned.sum()) == 0 and bool((data.images == 0).all())  # the set itself is untouched
    again = data.epoch(data.images, torch.Generator().manual_seed(0))
    assert torch.equal(again.poisoned, first.poisoned)


def test_loss_terms_see_each_epochs_poison_flags():
    # Each image is one constant value that names its row (clean i / 128, triggered i / 128 + 0.5), so the
    # rows a batch holds as poisoned can be read back whatever the shuffle and the flip.
    n = 64
    ids = torch.arange(n, dtype=torch.float32) / (2 * n)
    labels = torch.arange(n) % 4
    rows = torch.nonzero(labels != 0).flatten()
    images = ids[:, None, None, None].expand(n, 3, 4, 4).clone()
    redraw = PoisonRedraw(rows, images[rows] + 0.5, 0.5, 0)
    data = TrainSet(images, labels, redraw=redraw)
    seen = []

    def record(batch, features):
        assert bool((batch.images[batch.poisoned] >= 0.5).all())
        assert bool((batch.images[~batch.poisoned] < 0.5).all())
        seen.append({round(float(v) * 2 * n) for v in batch.images[batch.poisoned][:, 0, 0, 0] - 0.5})
        return torch.zeros(())

    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    config = TrainConfig(epochs=3, batch_size=n, augment="crop_flip", crop_padding=0)
    train_model(
        model, data, config=config, loss_terms=[LossTerm(record, weight=0.0, name="probe")], progress=False
    )
    assert len(seen) == 3 and all(s <= set(rows.tolist()) and 8 < len(s) < 40 for s in seen)
    assert seen[0] != seen[1] != seen[2]


def test_redraw_validation():
    images, labels = torch.zeros(4, 3, 2, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(InputError, match="probability"):
        PoisonRedraw(torch.tensor([1]), torch.zeros(1, 3, 2, 2), 0.0, 0)
    with pytest.raises(InputError, match="index"):
        TrainSet(images, labels, redraw=PoisonRedraw(torch.tensor([9]), torch.zeros(1, 3, 2, 2), 0.1, 0))
    with pytest.raises(InputError, match="shape"):
        TrainSet(images, labels, redraw=PoisonRedraw(torch.tensor([1]), torch.zeros(1, 3, 3, 3), 0.1, 0))


def test_config_dict_keeps_earlier_keys_and_round_trips():
    # Fields added later are left out at their defaults, so earlier specs keep their cache keys.
    assert set(TrainConfig().to_dict()) == {
        "epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "label_smoothing",
        "channels_last", "bf16", "adversarial", "eval_every_epoch", "eval_batch_size",
    }  # fmt: skip
    config = TrainConfig(
        schedule="multistep", milestones=[0.4, 0.8], gamma=0.2, augment="crop", nesterov=False
    )
    assert config.to_dict()["milestones"] == [0.4, 0.8]
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "options",
    [
        {"schedule": "step"},
        {"milestones": [0.8, 0.4]},
        {"milestones": [1.5]},
        {"milestones": "0.5"},
        {"gamma": 0.0},
        {"augment": "mixup"},
        {"crop_padding": -1},
        {"nesterov": "yes"},
    ],
)
def test_invalid_recipe_options(options):
    with pytest.raises(ConfigError):
        TrainConfig(**options)
