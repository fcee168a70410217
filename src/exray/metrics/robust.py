"""Robust outlier statistics: the median absolute deviation (MAD) test used by Neural Cleanse (Wang et al.,
S&P'19 §IV-C; spec §3.2) over per-label trigger norms and by the poisoned-data detectors (spectral
signatures' variance fractions, SCAn's J*, spec §6) over per-class statistics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Consistency constant making the median absolute deviation estimate σ for normal data.
MAD_TO_SIGMA = 1.4826


def median_and_mad(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 · median(|v − median|)) of ``values`` (the median as numpy defines it: the mean of
    the two middle values for an even count)."""
    values = np.asarray(values, dtype=np.float64)
    median = float(np.median(values))
    return median, float(MAD_TO_SIGMA * np.median(np.abs(values - median)))


def upper_anomaly_index(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """One-sided robust z-scores (v − median) / MAD, 0 for values at or below the median.

    With MAD = 0 (at least half the values equal the median) a value above the median scores +inf.
    """
    values = np.asarray(values, dtype=np.float64)
    median, mad = median_and_mad(values)
    excess = np.maximum(values - median, 0.0)
    if mad > 0:
        return excess / mad
    return np.where(excess > 0, np.inf, 0.0)


def anomaly_index(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Two-sided robust z-scores |v − median| / MAD (SCAn's ``calc_anomaly_index.m``).

    With MAD = 0 a value off the median scores +inf.
    """
    values = np.asarray(values, dtype=np.float64)
    median, mad = median_and_mad(values)
    deviation = np.abs(values - median)
    if mad > 0:
        return deviation / mad
    return np.where(deviation > 0, np.inf, 0.0)
