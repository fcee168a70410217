"""Input validation and small statistics shared by the detectors (their settings are checked with
:mod:`exray.options`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from exray.errors import InputError


def as_features(features: Any, name: str = "features") -> np.ndarray:
    """``features`` as a float64 (N, D) array (higher dimensions flattened per sample)."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    try:
        array = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric array: {exc}") from exc
    if array.ndim < 2:
        raise InputError(f"{name} must have shape (N, D), got {array.shape}")
    array = array.reshape(array.shape[0], -1)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        raise InputError(f"{name} holds NaN or Inf")
    return array


def as_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """``labels`` as an int64 (n,) array; raises unless they are n integer values."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != n:
        raise InputError(f"{name} must have shape ({n},) to match the features, got {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name} must be integers, got dtype {array.dtype}")
    integral = np.issubdtype(array.dtype, np.integer)
    if not integral and not (np.isfinite(array).all() and np.all(array == np.round(array))):
        raise InputError(f"{name} must be integer class labels")
    return array.astype(np.int64)
