"""Batched image geometry for the sign generator (:mod:`exray.data.synth`): homographies, polygon areas, and a
deterministic per-sample Gaussian blur."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BLUR_RADIUS = 3  # taps on each side at the output resolution (covers sigma <= 1)


def column(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values)).float()[:, None, None, None]


def homographies(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(N, 3, 3) homographies mapping the 4 points ``src`` onto each of ``dst`` (N, 4, 2)."""
    n = dst.shape[0]
    a = np.zeros((n, 8, 8))
    b = dst.reshape(n, 8)
    for j, (x, y) in enumerate(src):
        a[:, 2 * j, :] = [x, y, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        a[:, 2 * j, 6:] = np.stack([-x * dst[:, j, 0], -y * dst[:, j, 0]], axis=1)
        a[:, 2 * j + 1, :6] = [0.0, 0.0, 0.0, x, y, 1.0]
        a[:, 2 * j + 1, 6:] = np.stack([-x * dst[:, j, 1], -y * dst[:, j, 1]], axis=1)
    h = np.linalg.solve(a, b[..., None])[..., 0]
    return np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


def project(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (N, 3, 3) homographies to (V, 2) points: (N, V, 2)."""
    homog = np.concatenate([points, np.ones((points.shape[0], 1))], axis=1)
    mapped = np.einsum("nij,vj->nvi", transforms, homog)
    return mapped[..., :2] / mapped[..., 2:3]


def polygon_areas(polygons: np.ndarray) -> np.ndarray:
    """Shoelace areas of (N, V, 2) polygons."""
    x, y = polygons[..., 0], polygons[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, axis=1) - y * np.roll(x, -1, axis=1)).sum(axis=1))


def gaussian_blur(images: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (output pixels), as shifted sums (deterministic)."""
    offsets = np.arange(-BLUR_RADIUS, BLUR_RADIUS + 1)
    safe = np.maximum(sigmas, 1e-3)[:, None]
    weights = np.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    w = torch.from_numpy(weights).float()
    h, width = images.shape[-2:]
    padded = F.pad(images, (BLUR_RADIUS,) * 4, mode="replicate")
    rows = sum(w[:, j, None, None, None] * padded[:, :, :, j : j + width] for j in range(offsets.size))
    return sum(w[:, j, None, None, None] * rows[:, :, j : j + h, :] for j in range(offsets.size))
