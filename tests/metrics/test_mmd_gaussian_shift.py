"""MMD against its closed form for a known Gaussian shift (spec §6.1 kernel with fixed bandwidths).

For X ~ N(0, σ²I_d), Y ~ N(μ, σ²I_d) and k(a, b) = Σ_b exp(−‖a − b‖² / bw_b), a Gaussian integral gives
MMD² = Σ_b 2·(1 + 4σ²/bw_b)^(−d/2)·(1 − exp(−‖μ‖² / (bw_b + 4σ²))); the U-statistic estimates it
without bias, and the V-statistic exceeds it by its diagonal terms.
"""

import math

import pytest
import torch

from exray.metrics import mmd
from exray.utils import torch_generator

BANDWIDTHS = (0.5, 2.0, 8.0)


def _closed_form(shift: float, sigma: float, d: int) -> float:
    return sum(
        2.0 * (1.0 + 4.0 * sigma**2 / bw) ** (-d / 2) * (1.0 - math.exp(-(shift**2) / (bw + 4.0 * sigma**2)))
        for bw in BANDWIDTHS
    )


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.5])
def test_unbiased_mmd_matches_the_gaussian_closed_form(shift):
    g = torch_generator(11)
    d, sigma, n = 3, 0.8, 120
    mu = torch.zeros(d, dtype=torch.float64)
    mu[0] = shift
    values = torch.tensor(
        [
            float(
                mmd(
                    sigma * torch.randn(n, d, generator=g, dtype=torch.float64),
                    mu + sigma * torch.randn(n, d, generator=g, dtype=torch.float64),
                    bandwidths=BANDWIDTHS,
                    estimator="unbiased",
                )
            )
            for _ in range(40)
        ]
    )
    expected = _closed_form(shift, sigma, d)
    error = 4 * float(values.std()) / math.sqrt(len(values))
    assert float(values.mean()) == pytest.approx(expected, abs=error)


def test_biased_mmd_exceeds_the_closed_form_by_its_diagonal():
    # E[V] = MMD² + (1/n + 1/m)·(k(0) − E k(X, X')) for equal within-group kernels: here k(0) = 3.
    g = torch_generator(12)
    d, sigma, n = 2, 1.0, 50
    within = sum((1.0 + 4.0 * sigma**2 / bw) ** (-d / 2) for bw in BANDWIDTHS)
    expected = _closed_form(1.0, sigma, d) + (2.0 / n) * (len(BANDWIDTHS) - within)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    values = torch.tensor(
        [
            float(
                mmd(
                    sigma * torch.randn(n, d, generator=g, dtype=torch.float64),
                    shift + sigma * torch.randn(n, d, generator=g, dtype=torch.float64),
                    bandwidths=BANDWIDTHS,
                )
            )
            for _ in range(60)
        ]
    )
    error = 4 * float(values.std()) / math.sqrt(len(values))
    assert float(values.mean()) == pytest.approx(expected, abs=error)
