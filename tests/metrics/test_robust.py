import numpy as np
import pytest

from exray.metrics.robust import MAD_TO_SIGMA, median_and_mad, upper_anomaly_index
from exray.scanners import mad_anomaly


def test_median_and_mad_match_their_closed_forms():
    assert median_and_mad([1.0, 2.0, 4.0, 10.0]) == (3.0, pytest.approx(MAD_TO_SIGMA * 1.5))  # |dev| 2 1 1 7
    assert median_and_mad([5.0, 5.0, 5.0]) == (5.0, 0.0)
    rng = np.random.default_rng(0)  # for normal data the scaled MAD estimates σ
    assert median_and_mad(rng.normal(0.0, 3.0, 200_000))[1] == pytest.approx(3.0, rel=0.01)


def test_both_mad_tests_share_one_median_and_mad():
    values = [10.0, 10.5, 11.0, 9.5, 2.0]
    median, mad = median_and_mad(values)
    nc = mad_anomaly(values)  # Neural Cleanse: the lower tail, |v − median| / MAD
    assert (nc["median"], nc["mad"]) == (median, mad)
    assert nc["anomaly_index"] == pytest.approx((median - 2.0) / mad) and nc["flagged"] == [4]
    upper = upper_anomaly_index(values)  # the detectors: the upper tail only
    assert upper[4] == 0.0 and upper[2] == pytest.approx((11.0 - median) / mad)
