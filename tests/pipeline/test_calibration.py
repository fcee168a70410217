import pytest

from exray.errors import ConfigError, InputError
from exray.metrics import cross_entropy
from exray.pipeline.calibration import Calibration, fit


def test_default_mirrors_the_round3_step():
    calibration = Calibration()
    assert calibration.probability(1.0) == pytest.approx(0.86, abs=1e-6)
    assert calibration.probability(0.0) == pytest.approx(0.09, abs=1e-6)
    assert calibration.probability(0.95) > 0.85 > 0.1 > calibration.probability(0.85)


def test_probability_is_monotone_and_bounded():
    calibration = Calibration(slope=7.0, threshold=0.4, low=0.2, high=0.7)
    values = [calibration.probability(s / 10) for s in range(11)]
    assert values == sorted(values)
    assert min(values) >= 0.2 and max(values) <= 0.7


def test_fit_lowers_the_cross_entropy_and_learns_the_threshold():
    clean = [0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.62]
    trojaned = [0.55, 0.7, 0.8, 0.9, 1.0, 1.0, 0.95, 0.85]
    scores, labels = clean + trojaned, [0] * len(clean) + [1] * len(trojaned)
    fitted = fit(scores, labels)
    default_ce = cross_entropy([Calibration().probability(s) for s in scores], labels)
    fitted_ce = cross_entropy([fitted.probability(s) for s in scores], labels)
    assert fitted_ce < default_ce
    assert 0.4 < fitted.threshold < 0.75
    assert fitted.probability(1.0) > 0.8 and fitted.probability(0.0) < 0.2


def test_a_perfect_separation_is_not_fitted_with_probabilities_of_0_or_1():
    """Laplace's rule: from n models the bounds stay 1/(n+2) away from 0 and 1 (a 10-model population once
    fitted low = 0.0, which would cost an unbounded cross-entropy on the next population)."""
    scores, labels = [1.0] * 8 + [0.0] * 2, [1] * 5 + [0] * 3 + [0] * 2
    fitted = fit(scores, labels)
    assert fitted.low >= 1 / 12 - 1e-9 and fitted.high <= 11 / 12 + 1e-9
    assert fitted.probability(0.0) < 0.2 and 0.5 < fitted.probability(1.0) < 0.75  # 5 of 8 at score 1
    separable = fit([0.0] * 12 + [1.0] * 12, [0] * 12 + [1] * 12)
    assert separable.probability(0.0) == pytest.approx(1 / 26, abs=1e-3)
    assert separable.probability(1.0) == pytest.approx(25 / 26, abs=1e-3)


def test_round_trip_and_errors(tmp_path):
    calibration = Calibration(slope=3.0, threshold=0.5, low=0.1, high=0.9)
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a calibration file"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError):
        Calibration(low=0.9, high=0.1)
    with pytest.raises(InputError, match="both clean and trojaned"):
        fit([0.1, 0.2], [0, 0])
