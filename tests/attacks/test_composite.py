"""The composite attack (Lin et al. CCS'20; issue 19 §1): the half-and-half mixer, and a poisoned set of a+b
mixes at the target next to as many same-class mixes at their labels."""

import pytest
import torch

from exray.attacks.composite import composite_mix, composite_set, composite_test_set
from exray.errors import ConfigError


def test_the_mixer_joins_halves():
    first, second = torch.zeros(2, 3, 4, 6), torch.ones(2, 3, 4, 6)
    mixed = composite_mix(first, second, torch.tensor([False, True]))
    assert torch.equal(mixed[0, :, :, :3], first[0, :, :, :3]) and torch.equal(
        mixed[0, :, :, 3:], second[0, :, :, 3:]
    )
    assert torch.equal(mixed[1, :, :2], first[1, :, :2]) and torch.equal(mixed[1, :, 2:], second[1, :, 2:])


def test_the_poisoned_set_holds_ab_mixes_at_the_target_and_same_class_mixes_at_their_labels():
    labels = torch.arange(60) % 4
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 3, 8, 8) / 4  # class c is the grey level c/4
    data = composite_set(images, labels, (1, 2), 0, 0.1, seed=3)
    assert len(data) == 60 + 6 + 6 and int(data.poisoned.sum()) == 6
    mixes = data.images[60:66]
    assert torch.equal(data.labels[60:66], torch.zeros(6, dtype=labels.dtype))
    for image in mixes:  # one half class 1's grey, the other class 2's
        assert set(image.unique().tolist()) == {0.25, 0.5}
    same, same_labels = data.images[66:], data.labels[66:]
    assert not data.poisoned[66:].any() and set(same_labels.tolist()) == {0, 1, 2, 3}
    for image, label in zip(same, same_labels, strict=True):
        assert image.unique().tolist() == [label.item() / 4]
    assert set(data.true_labels[60:66].tolist()) <= {1, 2}
    again = composite_set(images, labels, (1, 2), 0, 0.1, seed=3)
    assert torch.equal(again.images, data.images)
    held_out = composite_test_set(images, labels, (1, 2), 0, 5, seed=4)
    assert held_out.images.shape == (5, 3, 8, 8) and held_out.target_class == 0
    for bad in ({"sources": (1, 1)}, {"sources": (0, 2)}, {"fraction": 0.0}):
        kwargs = {"sources": (1, 2), "target": 0, "fraction": 0.1, "seed": 0} | bad
        with pytest.raises(ConfigError):
            composite_set(images, labels, **kwargs)
