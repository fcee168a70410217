"""The shared DetectionResult contract."""

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from exray.detectors import DetectionResult
from exray.errors import InputError


def _result(flags):
    flags = np.asarray(flags, dtype=bool)
    return DetectionResult(
        "toy", {"alpha": 1}, flags.astype(float), flags, {0: {"flagged": True}}, {"note": "x"}
    )


def test_evaluate_is_precision_recall_f1_over_the_whole_set():
    rng = np.random.default_rng(0)
    flags = rng.random(300) < 0.2
    truth = rng.random(300) < 0.1
    p, r, f, _ = precision_recall_fscore_support(truth, flags, average="binary", zero_division=0)
    prf = _result(flags).evaluate(truth)
    assert (prf.precision, prf.recall, prf.f1) == pytest.approx((p, r, f), abs=1e-12)


def test_result_is_immutable():
    result = _result([True, False, True])
    assert result.n_flagged == 2
    np.testing.assert_array_equal(result.flagged_indices, [0, 2])
    with pytest.raises(ValueError, match="read-only"):
        result.flags[1] = True
    with pytest.raises(ValueError, match="read-only"):
        result.scores[0] = 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.detector = "other"
    with pytest.raises(TypeError):
        result.options["alpha"] = 2
    with pytest.raises(TypeError):
        result.classes[0]["flagged"] = False
    with pytest.raises(TypeError):
        result.summary["note"] = "y"


def test_result_does_not_alias_caller_arrays():
    flags = np.array([True, False])
    result = _result(flags)
    flags[1] = True
    assert result.n_flagged == 1


def test_result_validates_shapes():
    with pytest.raises(InputError):
        DetectionResult("toy", {}, np.zeros(3), np.zeros(2, dtype=bool))
    with pytest.raises(InputError, match="entries"):
        _result([True, False]).evaluate([True, False, False])
