"""The coloured scikit-learn digits (the SDRM study's second data source): seeded, disjoint splits."""

import numpy as np
import pytest
import torch

from exray.data.digits import DigitsOptions, render_digits, render_digits_train_test, split_pools
from exray.errors import ConfigError


def test_same_seed_same_images_other_seed_other_images():
    a = render_digits(12, seed=3)
    b = render_digits(12, seed=3)
    c = render_digits(12, seed=4)
    for field in ("images", "labels", "masks", "base_index"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.images, c.images)


def test_shapes_ranges_and_class_balance():
    data = render_digits(7, seed=0, size=24)
    assert data.images.shape == (70, 3, 24, 24) and data.images.dtype == torch.float32
    assert data.masks.shape == (70, 1, 24, 24) and data.masks.dtype == torch.bool
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert torch.bincount(data.labels).tolist() == [7] * 10
    assert 0.05 < float(data.masks.float().mean()) < 0.6  # the digit's ink covers part of the image
    assert len(torch.unique(data.labels[:10])) > 3  # shuffled, not sorted by class


def test_digit_colour_differs_from_the_background():
    data = render_digits(5, seed=1, options=DigitsOptions(noise_sigma=0.0, gradient=0.0))
    luma = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    y = (data.images * luma).sum(dim=1, keepdim=True)
    ink = (y * data.masks).flatten(1).sum(1) / data.masks.flatten(1).sum(1)
    paper = (y * ~data.masks).flatten(1).sum(1) / (~data.masks).flatten(1).sum(1)
    assert float((ink - paper).abs().min()) > 0.1


def test_train_and_test_show_disjoint_base_digits():
    pools = split_pools(0.3)
    for train, test in zip(pools["train"], pools["test"]):
        assert not set(train) & set(test)
        assert test.size == round(0.3 * (train.size + test.size))
    train, test = render_digits_train_test(20, 10, seed=0)
    assert not set(train.base_index.tolist()) & set(test.base_index.tolist())
    from sklearn.datasets import load_digits

    targets = load_digits().target
    assert np.array_equal(targets[train.base_index.numpy()], train.labels.numpy())


def test_a_small_pool_is_cycled_through():
    data = render_digits(150, seed=0, split="test")  # each class's test pool holds ~54 digits
    counts = np.bincount(data.base_index.numpy())
    shown = counts[counts > 0]
    assert shown.max() - shown.min() <= 1
    assert len(torch.unique(data.images.flatten(1), dim=0)) == len(data)  # re-rendered differently


@pytest.mark.parametrize(
    "options",
    [
        {"scale": (0.0, 1.0)},
        {"rotation_deg": 200.0},
        {"shift": 0.6},
        {"min_contrast": 0.9},
        {"test_fraction": 1.0},
    ],
)
def test_invalid_options(options):
    with pytest.raises(ConfigError):
        DigitsOptions(**options)


def test_options_round_trip_and_argument_checks():
    options = DigitsOptions(scale=(0.9, 1.0), noise_sigma=0.0)
    assert DigitsOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ConfigError, match="unknown digits options"):
        DigitsOptions.from_dict({"blur": 1.0})
    for kwargs in ({"per_class": 0, "seed": 0}, {"per_class": 2, "seed": 0, "split": "val"}):
        with pytest.raises(ConfigError):
            render_digits(**kwargs)
