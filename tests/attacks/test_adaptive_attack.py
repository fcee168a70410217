"""The adaptive attack against EX-RAY (paper §4.5; issue 19 §1): its loss in closed form on known features,
zero without both groups, and validated options. (That training with it narrows the feature gap:
tests/train/test_adaptive_training.py.)"""

import pytest
import torch

from exray.attacks import AdaptiveConfig, AdaptiveLoss
from exray.errors import ConfigError
from exray.models import build_model
from exray.models.layers import resolve_layer
from exray.train import Batch


def _batch(labels, true_labels, poisoned):
    n = len(labels)
    return Batch(
        torch.zeros(n, 3, 4, 4),
        torch.tensor(labels),
        torch.tensor(true_labels),
        torch.tensor(poisoned),
        torch.zeros(n, dtype=torch.bool),
        torch.zeros(n, 2),
    )


def test_the_moment_and_mse_losses_match_their_closed_forms():
    # rows 0-1: stamped victims relabelled to the target 1; rows 2-3 clean target; row 4 another class
    batch = _batch([1, 1, 1, 1, 0], [0, 0, 1, 1, 0], [True, True, False, False, False])
    f = torch.zeros(5, 2, 1, 2)
    f[0, 0], f[1, 0] = torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 3.0]])  # channel 0: mean 2, std 1
    f[2, 0], f[3, 0] = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])  # clean: mean 0, std 0
    f[4] = 100.0  # the other class never counts
    moments = AdaptiveLoss("x", 1, "moments")(batch, {"x": f})
    # channel 0: (2 − 0)² mean gap, (1 − 0)² std gap; channel 1: 0, 0 → means over 2 channels: 2 + 0.5
    assert moments.item() == pytest.approx(2.0 + 0.5)
    mse = AdaptiveLoss("x", 1, "mse")(batch, {"x": f})
    # the mean maps differ by [1, 3] in channel 0 only: (1 + 9) / 4 positions
    assert mse.item() == pytest.approx(10 / 4)
    f.requires_grad_(True)
    AdaptiveLoss("x", 1)(batch, {"x": f}).backward()
    assert f.grad[:4].abs().sum() > 0 and f.grad[4].abs().sum() == 0


def test_a_batch_without_both_groups_adds_nothing():
    f = torch.rand(3, 2, 2, 2, requires_grad=True)
    only_clean = _batch([1, 1, 0], [1, 1, 0], [False, False, False])
    value = AdaptiveLoss("x", 1)(only_clean, {"x": f})
    assert value.item() == 0.0 and value.requires_grad


def test_the_term_sits_at_exrays_default_layer():
    model, sample = build_model("cnn", 3, width=0.5), torch.rand(1, 3, 32, 32)
    term = AdaptiveConfig(target_class=0, weight=10.0).loss_term(model, sample)
    assert term.layers == (resolve_layer(model, "block:-2", sample),)  # EX-RAY's default layer
    assert term.weight == 10.0 and term.name == "adaptive"
    for bad in (
        {"target_class": -1},
        {"target_class": 0, "weight": -1},
        {"target_class": 0, "variant": "l1"},
    ):
        with pytest.raises(ConfigError):
            AdaptiveConfig(**bad)
