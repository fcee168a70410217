"""Binary-decision metrics: confusion counts, precision / recall / F1, refinement effects."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from exray.errors import InputError
from exray.metrics import (
    PRF,
    ConfusionCounts,
    accuracy,
    binary_confusion,
    fp_reduction,
    precision_recall_f1,
    tp_loss,
)


def test_confusion_counts_closed_form():
    c = binary_confusion([1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 0])
    assert c == ConfusionCounts(tp=2, fp=1, fn=1, tn=2)
    assert c.total == 6
    assert c.accuracy == pytest.approx(4 / 6)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)
    assert c.fpr == pytest.approx(1 / 3)
    assert c.tpr == c.recall


def test_zero_denominators_give_zero():
    c = ConfusionCounts(tp=0, fp=0, fn=0, tn=3)
    assert (c.precision, c.recall, c.f1, c.accuracy) == (0.0, 0.0, 0.0, 1.0)
    assert precision_recall_f1([0, 0], [0, 0]) == PRF(0.0, 0.0, 0.0)
    assert precision_recall_f1([0, 0], [0, 0], zero_division=1.0) == PRF(1.0, 1.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    actual = rng.random(500) < 0.2
    predicted = rng.random(500) < 0.3
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, average="binary", zero_division=0)
    prf = precision_recall_f1(predicted, actual)
    assert (prf.precision, prf.recall, prf.f1) == pytest.approx((p, r, f), abs=1e-12)
    assert accuracy(predicted, actual) == pytest.approx(accuracy_score(actual, predicted))


def test_fp_reduction_and_tp_loss_closed_form():
    truth = [1, 1, 1, 0, 0, 0, 0]
    base = [1, 1, 1, 1, 1, 0, 0]  # TP 3, FP 2
    refined = [1, 1, 0, 1, 0, 0, 0]  # TP 2, FP 1
    assert fp_reduction(base, refined, truth) == pytest.approx(0.5)
    assert tp_loss(base, refined, truth) == pytest.approx(1 / 3)
    assert fp_reduction(base, base, truth) == 0.0
    assert tp_loss(base, base, truth) == 0.0


def test_refinement_effects_with_zero_base_counts():
    truth = [1, 0]
    assert fp_reduction([1, 0], [1, 0], truth) == 0.0  # no FP to reduce, none added
    assert fp_reduction([1, 0], [1, 1], truth) == -math.inf  # FPs created from none
    assert tp_loss([0, 0], [0, 0], truth) == 0.0
    assert tp_loss([0, 0], [1, 0], truth) == -math.inf  # a gain from no TP at all


def test_binary_inputs_are_validated():
    with pytest.raises(InputError):
        binary_confusion([1, 0, 1], [1, 0])
    with pytest.raises(InputError):
        binary_confusion([1, 2], [1, 0])
    with pytest.raises(InputError):
        binary_confusion([], [])
    with pytest.raises(InputError):
        binary_confusion(np.ones((2, 2)), np.ones((2, 2)))
