"""TrojAI metrics (spec §7.1) against closed forms, hand-computed harness cases and scikit-learn."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from exray.errors import ConfigError, InputError
from exray.metrics import (
    CI_Z,
    brier_score,
    confusion_at,
    cross_entropy,
    cross_entropy_ci,
    cross_entropy_per_model,
    nist_thresholds,
    roc_auc,
    roc_auc_nist,
)


def test_cross_entropy_closed_form():
    ce = cross_entropy_per_model([0.9, 0.2, 0.6], [1, 0, 0])
    np.testing.assert_allclose(ce, [-math.log(0.9), -math.log(0.8), -math.log(0.4)], rtol=1e-15)
    assert cross_entropy([0.9, 0.2, 0.6], [1, 0, 0]) == pytest.approx(np.mean(ce), rel=1e-15)


def test_cross_entropy_clips_at_1e_minus_12():
    # A confident wrong answer costs −ln(1e-12) = 12·ln 10, not infinity.
    ce = cross_entropy_per_model([0.0, 1.0, 1.0, 0.0], [1, 0, 1, 0])
    # p = 1 is clipped to 1 − 1e-12, and 1 − (1 − 1e-12) is not exactly 1e-12 in floating point.
    clipped_one = 1.0 - 1e-12
    expected = [
        -math.log(1e-12),
        -math.log(1.0 - clipped_one),
        -math.log(clipped_one),
        -math.log(clipped_one),
    ]
    np.testing.assert_allclose(ce, expected, rtol=1e-15)
    assert ce[0] == pytest.approx(12 * math.log(10))
    assert ce[1] == pytest.approx(12 * math.log(10), rel=1e-5)


def test_missing_prediction_counts_as_one_half():
    ce = cross_entropy_per_model([None, float("nan"), 0.5], [1, 0, 1])
    np.testing.assert_allclose(ce, [math.log(2)] * 3)
    assert brier_score([None, 1.0], [1, 1]) == pytest.approx(0.125)
    assert confusion_at(np.array([np.nan, 0.7]), [0, 1], threshold=0.5).fp == 1


def test_cross_entropy_matches_sklearn_log_loss():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 200)
    y = rng.random(200) < 0.5
    assert cross_entropy(p, y) == pytest.approx(log_loss(y, p), rel=1e-12)


def test_confidence_interval_is_z_std_over_sqrt_n():
    p, y = [0.9, 0.2, 0.6, 0.5], [1, 0, 0, 1]
    ce = np.array([-math.log(0.9), -math.log(0.8), -math.log(0.4), -math.log(0.5)])
    population_std = math.sqrt(np.mean((ce - ce.mean()) ** 2))
    assert cross_entropy_ci(p, y) == pytest.approx(1.96 * population_std / 2.0, rel=1e-12)
    assert cross_entropy_ci(p, y, z=CI_Z[99]) == pytest.approx(2.58 * population_std / 2.0, rel=1e-12)


def test_brier_score_closed_form_and_sklearn():
    assert brier_score([0.9, 0.2, 0.6], [1, 0, 0]) == pytest.approx((0.01 + 0.04 + 0.36) / 3)
    rng = np.random.default_rng(1)
    p, y = rng.random(100), rng.random(100) < 0.3
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p), rel=1e-12)


def test_exact_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    p = np.round(rng.random(300), 1)  # many ties
    y = rng.random(300) < 0.4
    assert roc_auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert roc_auc(torch.tensor(p), torch.tensor(y)) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_nist_thresholds_are_the_harness_grid():
    t = nist_thresholds()
    assert t.shape == (101,)
    assert t[0] == 0.0
    assert t[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("p", "y", "expected"),
    [
        # Perfect 0/1 answers: points (1,1) at t=0 and (0,1) for t>0 → area 1.
        ([1.0, 0.0], [1, 0], 1.0),
        # Uninformative 0/1 answers: (1,1) at t=0 and (0.5,0.5) for t>0; the curve never reaches FPR 0,
        # so the harness's area is the trapezoid from FPR 0.5 to 1 only: 0.5·(0.5+1)/2 = 0.375.
        ([1.0, 0.0, 1.0, 0.0], [1, 1, 0, 0], 0.375),
        # A constant 0.5: (1,1) up to t=0.5, (0,0) after → the diagonal, 0.5.
        ([0.5, 0.5], [1, 0], 0.5),
        # A constant 1: detected at every threshold, a single point (1,1) → area 0.
        ([1.0, 1.0], [1, 0], 0.0),
    ],
)
def test_nist_auc_hand_computed_step_cases(p, y, expected):
    assert roc_auc_nist(p, y) == pytest.approx(expected, abs=1e-12)


def test_nist_auc_equals_exact_auc_on_bin_centres():
    # Scores at the centres of the 0.01 bins never share a bin unless equal, so the sweep is exact.
    rng = np.random.default_rng(3)
    p = (rng.integers(0, 100, 400) + 0.5) / 100
    y = rng.random(400) < 0.5
    assert roc_auc_nist(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_nist_auc_close_to_exact_on_continuous_scores():
    rng = np.random.default_rng(4)
    y = rng.random(500) < 0.5
    p = 1 / (1 + np.exp(-(rng.normal(size=500) + 1.5 * y)))
    exact = roc_auc_score(y, p)
    assert 0.7 < exact < 0.95
    # Only pairs inside one 0.01 bin are scored ½ instead of 0 or 1.
    assert abs(roc_auc_nist(p, y) - exact) < 0.005


def test_confusion_at_uses_greater_or_equal():
    c = confusion_at([0.2, 0.5, 0.7, 0.4], [0, 1, 1, 1], threshold=0.5)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 0, 1, 1)
    assert c.accuracy == pytest.approx(0.75)
    assert c.precision == 1.0
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("p", "y"),
    [
        ([0.5, 0.5], [1]),  # length mismatch
        ([], []),  # empty
        ([1.2, 0.5], [1, 0]),  # out of [0, 1]
        ([0.5, 0.5], [2, 0]),  # not binary
        ([[0.5], [0.5]], [1, 0]),  # not 1-D
        (["a", 0.5], [1, 0]),  # not a number
    ],
)
def test_bad_inputs_raise_input_error(p, y):
    with pytest.raises(InputError):
        cross_entropy(p, y)


def test_auc_needs_both_classes():
    with pytest.raises(InputError, match="both"):
        roc_auc([0.2, 0.8], [1, 1])
    with pytest.raises(InputError, match="both"):
        roc_auc_nist([0.2, 0.8], [0, 0])


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError):
        cross_entropy_ci([0.5], [1], z=0.0)
    with pytest.raises(ConfigError):
        cross_entropy([0.5], [1], epsilon=0.0)
    with pytest.raises(ConfigError):
        confusion_at([0.5], [1], threshold=1.5)
