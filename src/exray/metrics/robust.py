"""Robust outlier statistics: the median absolute deviation (MAD) test used by Neural Cleanse (Wang et al.,
S&P'19 §IV-C; spec §3.2) over per-label trigger norms and by the poisoned-data detectors (spectral
signatures' variance fractions, SCAn's J*, spec §6) over per-class statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from exray.errors import InputError

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


def mad_anomaly(norms: Sequence[float], threshold: float = 2.0) -> dict[str, Any]:
    """The MAD outlier test over per-label mask norms (spec §3.2).

    Returns ``anomaly_index`` = |min − median| / MAD (0 when MAD is 0), per-label indices
    |ℓ − median| / MAD, and ``flagged``: labels with ℓ < median and index > ``threshold``, smallest norm
    first. MAD = 1.4826 · median(|ℓ − median|).
    """
    values = np.array([float(v) for v in norms], dtype=np.float64)
    if len(values) == 0:
        raise InputError("mad_anomaly needs at least one norm")
    median, mad = median_and_mad(values)
    n = len(values)
    index = (np.abs(values - median) / mad).tolist() if mad > 0 else [0.0] * n
    flagged = sorted(
        (i for i in range(n) if values[i] < median and index[i] > threshold), key=lambda i: float(values[i])
    )
    return {
        "median": median,
        "mad": mad,
        "anomaly_index": abs(float(values.min()) - median) / mad if mad > 0 else 0.0,
        "label_index": index,
        "flagged": flagged,
    }
