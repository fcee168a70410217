"""Spectral signatures (Tran et al. 2018): removal budget, both class-selection variants, scores."""

import math

import numpy as np
import pytest

from exray.detectors import SpectralSignatures
from exray.errors import ConfigError, InputError


def test_anomalous_variant_acts_on_the_poisoned_class_only(planted10):
    result = SpectralSignatures(class_selection="anomalous").detect(planted10.features, planted10.labels)
    # ⌊1.5 · 0.1 · 200⌋ = 30 removed from class 0 only: all 20 poisoned plus 10 clean.
    assert result.summary["classes_acted_on"] == [0]
    assert result.classes[0]["n_removed"] == 30
    assert result.n_flagged == 30
    prf = result.evaluate(planted10.is_poisoned)
    assert prf.recall == 1.0
    assert prf.precision == pytest.approx(20 / 30)
    assert result.classes[0]["anomaly_index"] > 100
    assert all(result.classes[k]["anomaly_index"] < math.exp(2) for k in range(1, 10))


def test_all_classes_variant_over_removes_everywhere(planted10):
    result = SpectralSignatures().detect(planted10.features, planted10.labels)
    assert result.n_flagged == 10 * 30
    prf = result.evaluate(planted10.is_poisoned)
    assert prf.recall == 1.0
    assert prf.precision == pytest.approx(20 / 300)


def test_exact_budget_gives_perfect_f1(planted10):
    # ε = 1/15 → ⌊1.5 · ε · 200⌋ = 20 = the number of poisoned samples.
    detector = SpectralSignatures(poison_rate=1 / 15, class_selection="anomalous")
    assert detector.removal_budget(200) == 20
    assert detector.detect(planted10.features, planted10.labels).evaluate(planted10.is_poisoned).f1 == 1.0


def test_removal_budget_rounds_down_and_caps_at_half():
    assert SpectralSignatures().removal_budget(200) == 30
    assert SpectralSignatures().removal_budget(99) == 14
    assert SpectralSignatures(poison_rate=0.5).removal_budget(200) == 100
    assert SpectralSignatures(poison_rate=0.5, max_removed_fraction=0.3).removal_budget(200) == 60


def test_quantile_budget_is_arts_count():
    # ART keeps score < quantile(1 - 1.5 eps): 1 + floor(1.5 eps (n - 1)) of n distinct scores.
    quantile = SpectralSignatures(budget="quantile", max_removed_fraction=1.0)
    assert quantile.removal_budget(250) == 38  # the floor budget: 37
    assert SpectralSignatures().removal_budget(250) == 37
    assert quantile.removal_budget(200) == 30
    assert SpectralSignatures(poison_rate=0.33, budget="quantile", max_removed_fraction=1.0).removal_budget(
        300
    ) == 1 + int(1.5 * 0.33 * 299)
    assert SpectralSignatures(poison_rate=0.33, budget="quantile").removal_budget(300) == 149


def test_quantile_budget_removes_every_tie_at_the_cutoff_up_to_the_cap():
    x = np.zeros((20, 3))
    x[:, 0] = [5.0] * 6 + list(np.linspace(-1.0, 1.0, 14))
    y = np.zeros(20, dtype=int)
    # One direction of variance: the six equal outliers tie; a quantile budget of 1 + floor(0.15 * 19) = 3
    # takes all six, a cap of 0.25 cuts that to five.
    assert SpectralSignatures(budget="quantile", max_removed_fraction=1.0).detect(x, y).n_flagged == 6
    assert SpectralSignatures(budget="quantile", max_removed_fraction=0.25).detect(x, y).n_flagged == 5


def test_scores_are_squared_projections_on_the_top_singular_vector(planted10):
    result = SpectralSignatures().detect(planted10.features, planted10.labels)
    for label in (0, 3):
        r = planted10.features[planted10.labels == label]
        centred = r - r.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        expected = (centred @ vectors[:, -1]) ** 2
        np.testing.assert_allclose(result.scores[planted10.labels == label], expected, rtol=1e-8)
    assert (
        result.scores[planted10.is_poisoned].min() > result.scores[:200][~planted10.is_poisoned[:200]].max()
    )


def test_clean_data_is_left_alone_by_the_anomalous_variant(clean10):
    result = SpectralSignatures(class_selection="anomalous").detect(clean10.features, clean10.labels)
    assert result.n_flagged == 0
    assert result.summary["classes_acted_on"] == []


def test_anomalous_variant_needs_three_classes(planted10):
    few = planted10.labels < 2
    with pytest.raises(InputError, match="at least 3 classes"):
        SpectralSignatures(class_selection="anomalous").detect(planted10.features[few], planted10.labels[few])
    # The paper's variant works on a single class.
    only0 = planted10.labels == 0
    result = SpectralSignatures(poison_rate=1 / 15).detect(planted10.features[only0], planted10.labels[only0])
    assert result.evaluate(planted10.is_poisoned[only0]).f1 == 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"poison_rate": 0.0},
        {"poison_rate": 1.5},
        {"removal_factor": 0.0},
        {"class_selection": "some"},
        {"anomaly_threshold": -1.0},
        {"max_removed_fraction": 0.0},
        {"poison_rate": float("nan")},
        {"score": "squared"},
        {"budget": "ceil"},
    ],
)
def test_invalid_options_raise_at_construction(options):
    with pytest.raises(ConfigError):
        SpectralSignatures(**options)
