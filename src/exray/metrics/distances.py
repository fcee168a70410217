"""Differentiable distances between two sample sets (spec §6.1 MMD, §6.5 energy and sliced Wasserstein).

All functions take ``x`` of shape (n, ...) and ``y`` of shape (m, ...), flatten every sample to a vector,
and return a 0-d tensor through which gradients flow to both inputs. They are the difference metrics of
SDRM / ML-MMDR (Xia et al.) between clean target-class and poisoned representations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from exray.errors import ConfigError, InputError

MMDEstimator = Literal["biased", "unbiased"]


def _pair(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.dim() == 0 or y.dim() == 0:
        raise InputError(
            f"{name}: x and y must have a sample dimension, got shapes {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise InputError(f"{name}: empty sample set (x has {x.shape[0]} samples, y has {y.shape[0]})")
    if x.device != y.device:
        raise InputError(f"{name}: x is on {x.device} but y is on {y.device}")
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise InputError(
            f"{name}: samples of x have {x.shape[1]} features but samples of y have {y.shape[1]}"
        )
    if x.shape[1] == 0:
        raise InputError(f"{name}: samples have no features")
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x, y = x.to(dtype), y.to(dtype)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise InputError(f"{name}: x or y holds NaN or Inf")
    return x, y


def _distances(z: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances within ``z`` (N, d), each computed from its own pair of rows.

    ``torch.cdist`` without its matrix-product shortcut (the official ML-MMDR code broadcasts the
    differences the same way): the diagonal is exactly 0, duplicated rows give bit-identical rows and
    columns (so a set compared with itself cancels exactly), and the gradient at a zero distance is 0.
    """
    return torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")


def mmd_bandwidths(
    x: torch.Tensor, y: torch.Tensor, *, kernel_num: int = 5, kernel_mul: float = 2.0
) -> list[float]:
    """The data-driven bandwidths of spec §6.1 for the concatenated set z = [x; y] (N = n + m samples).

    bw₀ = Σ‖zᵢ − zⱼ‖² / (N² − N), computed on detached data; the bandwidths are
    bw₀ / kernel_mul^(kernel_num // 2) · kernel_mul^i for i = 0 … kernel_num − 1
    (defaults: {bw₀/4, bw₀/2, bw₀, 2bw₀, 4bw₀}).
    """
    _check_kernel(kernel_num, kernel_mul)
    x, y = _pair(x, y, "mmd_bandwidths")
    return _bandwidths(_distances(torch.cat([x, y]).detach()).square(), kernel_num, kernel_mul)


def _check_kernel(kernel_num: int, kernel_mul: float) -> None:
    if isinstance(kernel_num, bool) or not isinstance(kernel_num, int) or kernel_num < 1:
        raise ConfigError(f"kernel_num must be a positive integer, got {kernel_num!r}")
    if not kernel_mul > 0:
        raise ConfigError(f"kernel_mul must be positive, got {kernel_mul!r}")


def _bandwidths(sq_dist: torch.Tensor, kernel_num: int, kernel_mul: float) -> list[float]:
    """Bandwidths from the (detached) pairwise squared distances of the concatenated set."""
    n = sq_dist.shape[0]
    base = float(sq_dist.sum()) / (n * n - n)
    # All points coincide: every distance is 0 and any positive bandwidth gives the same kernel.
    base = max(base, torch.finfo(sq_dist.dtype).tiny)
    first = base / kernel_mul ** (kernel_num // 2)
    return [first * kernel_mul**i for i in range(kernel_num)]


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    estimator: MMDEstimator = "biased",
    bandwidths: Sequence[float] | None = None,
    kernel_num: int = 5,
    kernel_mul: float = 2.0,
) -> torch.Tensor:
    """Squared maximum mean discrepancy with the multi-bandwidth Gaussian kernel of ML-MMDR (spec §6.1).

    k(a, b) = Σ_b exp(−‖a − b‖² / bw_b) — no factor 2 — over the bandwidths of :func:`mmd_bandwidths`
    (or the fixed ``bandwidths`` given). ``estimator="biased"`` is the V-statistic of the official code,
    mean(K_xx) + mean(K_yy) − 2·mean(K_xy), diagonals included (exactly 0 for a set with itself);
    ``"unbiased"`` is the U-statistic, which drops the diagonals of K_xx and K_yy (needs ≥ 2 samples
    per set; can be slightly negative).
    """
    if estimator not in ("biased", "unbiased"):
        raise ConfigError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}")
    _check_kernel(kernel_num, kernel_mul)
    if bandwidths is not None:
        bandwidths = [float(b) for b in bandwidths]
        if not bandwidths or not all(b > 0 for b in bandwidths):
            raise ConfigError(f"bandwidths must be a non-empty list of positive numbers, got {bandwidths}")
    x, y = _pair(x, y, "mmd")
    n, m = x.shape[0], y.shape[0]
    if estimator == "unbiased" and min(n, m) < 2:
        raise InputError(f"unbiased MMD needs at least 2 samples per set, got {n} and {m}")
    dist = _distances(torch.cat([x, y])).square()
    if bandwidths is None:
        bandwidths = _bandwidths(dist.detach(), kernel_num, kernel_mul)
    kernel = sum(torch.exp(-dist / bw) for bw in bandwidths)
    k_xx, k_yy, k_xy, k_yx = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:], kernel[n:, :n]
    if estimator == "biased":
        return k_xx.mean() + k_yy.mean() - k_xy.mean() - k_yx.mean()
    xx = (k_xx.sum() - torch.diagonal(k_xx).sum()) / (n * (n - 1))
    yy = (k_yy.sum() - torch.diagonal(k_yy).sum()) / (m * (m - 1))
    return xx + yy - k_xy.mean() - k_yx.mean()


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Energy distance 2·E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Euclidean, V-statistic; spec §6.5).

    Every expectation is a mean over all pairs, diagonals included, so a set against itself gives 0.
    """
    x, y = _pair(x, y, "energy_distance")
    n = x.shape[0]
    dist = _distances(torch.cat([x, y]))
    return 2.0 * dist[:n, n:].mean() - dist[:n, :n].mean() - dist[n:, n:].mean()


def random_directions(
    n_projections: int, dim: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n_projections`` unit vectors in R^dim, uniform on the sphere (normalised Gaussians): (dim, K)."""
    theta = torch.randn(dim, n_projections, generator=generator, dtype=dtype, device=generator.device)
    return theta / theta.norm(dim=0, keepdim=True)


def wasserstein_1d(u: torch.Tensor, v: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """W_p^p between the empirical distributions of the rows of ``u`` (K, n) and ``v`` (K, m), per row.

    Exact: W_p^p = ∫₀¹ |F⁻¹(t) − G⁻¹(t)|^p dt with both quantile functions piecewise constant. With
    n = m this is the mean of |sorted differences|^p; otherwise the integral is split at the union of
    the breakpoints {i/n} ∪ {j/m}, on each piece of which both quantiles are constant.
    """
    us, _ = torch.sort(u, dim=1)
    vs, _ = torch.sort(v, dim=1)
    n, m = us.shape[1], vs.shape[1]
    if n == m:
        return (us - vs).abs().pow(p).mean(dim=1)
    # Breakpoints on the integer scale t·n·m: i·m for x, j·n for y.
    cuts = torch.unique(torch.cat([torch.arange(n + 1) * m, torch.arange(m + 1) * n]))
    starts, widths = cuts[:-1], (cuts[1:] - cuts[:-1]).to(us.dtype) / (n * m)
    ix, iy = (starts // m).to(us.device), (starts // n).to(us.device)
    return ((us[:, ix] - vs[:, iy]).abs().pow(p) * widths.to(us.device)).sum(dim=1)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 128,
    p: float = 2.0,
    *,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Sliced Wasserstein-p distance (spec §6.5): (mean over θ of W_p^p(θᵀx, θᵀy))^(1/p).

    The ``n_projections`` directions θ are normalised Gaussians drawn from ``generator`` (advanced by
    the call), or from a fresh generator seeded with ``seed`` when none is given — so equal arguments
    give equal values. The 1-D distances are exact (:func:`wasserstein_1d`), for equal or unequal
    sample sizes.
    """
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
        raise ConfigError(f"n_projections must be a positive integer, got {n_projections!r}")
    if not p >= 1:
        raise ConfigError(f"p must be >= 1, got {p!r}")
    x, y = _pair(x, y, "sliced_wasserstein")
    if generator is None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))
    theta = random_directions(n_projections, x.shape[1], generator=generator, dtype=x.dtype).to(x.device)
    power = wasserstein_1d((x @ theta).T, (y @ theta).T, p).mean()
    # The p-th root has an infinite slope at 0: give identical sets a zero (not NaN) gradient.
    positive = power > 0
    return torch.where(positive, torch.where(positive, power, torch.ones_like(power)).pow(1.0 / p), 0.0)
