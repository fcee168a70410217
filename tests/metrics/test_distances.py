"""MMD, energy distance and sliced Wasserstein (spec §6.1, §6.5): closed forms, brute-force loops,
gradients and seeding."""

import math

import pytest
import torch
from scipy.stats import norm, wasserstein_distance

from exray.errors import ConfigError, InputError
from exray.metrics import (
    energy_distance,
    mmd,
    mmd_bandwidths,
    random_directions,
    sliced_wasserstein,
    wasserstein_1d,
)
from exray.utils import torch_generator


def _sets(n=6, m=4, d=3, seed=0, dtype=torch.float64):
    g = torch_generator(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(m, d, generator=g, dtype=dtype) + 0.7


# ---- brute-force references (double loops, straight from the spec's formulas) ----


def _loop_sq(a, b):
    return float(sum((float(ai) - float(bi)) ** 2 for ai, bi in zip(a, b)))


def _loop_bandwidths(x, y, kernel_num=5, kernel_mul=2.0):
    z = list(x) + list(y)
    n = len(z)
    total = sum(_loop_sq(zi, zj) for zi in z for zj in z)
    base = total / (n * n - n) / kernel_mul ** (kernel_num // 2)
    return [base * kernel_mul**i for i in range(kernel_num)]


def _loop_mmd(x, y, bandwidths, unbiased=False):
    def k(a, b):
        return sum(math.exp(-_loop_sq(a, b) / bw) for bw in bandwidths)

    n, m = len(x), len(y)
    if unbiased:
        xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    else:
        xx = sum(k(a, b) for a in x for b in x) / n**2
        yy = sum(k(a, b) for a in y for b in y) / m**2
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def _loop_energy(x, y):
    def mean_dist(a, b):
        return sum(math.sqrt(_loop_sq(p, q)) for p in a for q in b) / (len(a) * len(b))

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


# ---- MMD ----


def test_bandwidths_follow_the_spec_formula():
    x, y = _sets()
    assert mmd_bandwidths(x, y) == pytest.approx(_loop_bandwidths(x, y), rel=1e-12)
    bws = mmd_bandwidths(x, y)
    assert bws[1] / bws[0] == pytest.approx(2.0)
    assert bws[2] == pytest.approx(
        sum(_loop_sq(a, b) for a in torch.cat([x, y]) for b in torch.cat([x, y])) / 90
    )


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd_equals_brute_force_loops(estimator):
    x, y = _sets()
    expected = _loop_mmd(x, y, _loop_bandwidths(x, y), unbiased=estimator == "unbiased")
    assert float(mmd(x, y, estimator=estimator)) == pytest.approx(expected, rel=1e-10)


def test_mmd_with_fixed_bandwidths_equals_brute_force():
    x, y = _sets(n=5, m=7)
    assert float(mmd(x, y, bandwidths=[0.5, 3.0])) == pytest.approx(_loop_mmd(x, y, [0.5, 3.0]), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_biased_mmd_of_a_set_with_itself_is_exactly_zero(dtype):
    x, _ = _sets(n=40, d=100, dtype=dtype)
    assert float(mmd(x, x)) == 0.0
    assert float(mmd(x, x.clone())) == 0.0


def test_unbiased_mmd_of_a_set_with_itself_drops_the_diagonals():
    # U(x, x) = 2·mean_{i≠j} k(xᵢ, xⱼ) − 2·mean_{i,j} k(xᵢ, xⱼ): the cross term keeps the diagonal
    # k(xᵢ, xᵢ) = kernel_num that the within terms drop, so it is negative.
    x, _ = _sets(n=8)
    bws = _loop_bandwidths(x, x)
    k_sum = sum(math.exp(-_loop_sq(a, b) / bw) for a in x for b in x for bw in bws)
    n, kernel_num = 8, len(bws)
    off_diagonal_mean = (k_sum - n * kernel_num) / (n * (n - 1))
    expected = 2 * off_diagonal_mean - 2 * k_sum / n**2
    assert float(mmd(x, x, estimator="unbiased")) == pytest.approx(expected, rel=1e-10)
    assert expected < 0


def test_unbiased_mmd_is_centred_on_zero_for_equal_distributions():
    g = torch_generator(5)
    biased, unbiased = [], []
    for _ in range(300):
        x = torch.randn(10, 2, generator=g, dtype=torch.float64)
        y = torch.randn(10, 2, generator=g, dtype=torch.float64)
        biased.append(float(mmd(x, y, bandwidths=[1.0, 4.0])))
        unbiased.append(float(mmd(x, y, bandwidths=[1.0, 4.0], estimator="unbiased")))
    u = torch.tensor(unbiased)
    assert abs(float(u.mean())) < 3 * float(u.std()) / math.sqrt(len(u))
    assert float(torch.tensor(biased).mean()) > 10 * float(u.std()) / math.sqrt(len(u))


def test_mmd_is_symmetric_and_grows_with_shift():
    x, y = _sets(n=30, m=20, d=5)
    assert float(mmd(x, y)) == pytest.approx(float(mmd(y, x)), rel=1e-12)
    g = torch_generator(1)
    a = torch.randn(200, 4, generator=g, dtype=torch.float64)
    b = torch.randn(200, 4, generator=g, dtype=torch.float64)
    values = [float(mmd(a, b + shift, bandwidths=[1.0, 4.0, 16.0])) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values)


def test_mmd_flattens_per_sample_dimensions():
    x, y = _sets(n=4, m=5, d=6)
    assert float(mmd(x.reshape(4, 2, 3), y.reshape(5, 3, 2))) == pytest.approx(float(mmd(x, y)), rel=1e-14)


def test_mmd_gradients_flow_and_skip_the_bandwidth():
    x, y = _sets(n=5, m=4, d=2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: mmd(a, b, bandwidths=[0.7, 2.0]), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: mmd(a, b, bandwidths=[0.7], estimator="unbiased"), (x, y))
    # With data-driven bandwidths the gradient is that of the fixed-bandwidth MMD (bw₀ on detached data).
    (g_auto,) = torch.autograd.grad(mmd(x, y), x)
    (g_fixed,) = torch.autograd.grad(mmd(x, y, bandwidths=mmd_bandwidths(x, y)), x)
    torch.testing.assert_close(g_auto, g_fixed)
    assert g_auto.abs().sum() > 0


def test_mmd_single_samples():
    x, y = _sets(n=1, m=1)
    assert float(mmd(x, y)) == pytest.approx(_loop_mmd(x, y, _loop_bandwidths(x, y)), rel=1e-12)
    with pytest.raises(InputError, match="at least 2"):
        mmd(x, y, estimator="unbiased")


# ---- energy distance ----


def test_energy_distance_equals_brute_force_loops():
    x, y = _sets(n=6, m=5, d=3)
    assert float(energy_distance(x, y)) == pytest.approx(_loop_energy(x, y), rel=1e-10)
    assert float(energy_distance(x, y)) == pytest.approx(float(energy_distance(y, x)), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_energy_distance_of_a_set_with_itself_is_zero(dtype):
    x, _ = _sets(n=30, d=50, dtype=dtype)
    assert float(energy_distance(x, x.clone())) == 0.0


def _energy_1d_normals(delta):
    # X ~ N(0,1), Y ~ N(δ,1): X − Y ~ N(−δ, 2) and E|N(μ, s²)| = s√(2/π)·exp(−μ²/2s²) + μ(1 − 2Φ(−μ/s)).
    s = math.sqrt(2.0)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-(delta**2) / (2 * s**2)) + delta * (
        1 - 2 * norm.cdf(-delta / s)
    )
    e_xx = 2 / math.sqrt(math.pi)
    return 2 * e_xy - 2 * e_xx


def test_energy_distance_matches_closed_form_for_shifted_normals():
    g = torch_generator(7)
    x = torch.randn(3000, 1, generator=g, dtype=torch.float64)
    y = torch.randn(3000, 1, generator=g, dtype=torch.float64)
    values = []
    for delta in (0.5, 1.0, 2.0, 4.0):
        value = float(energy_distance(x, y + delta))
        assert value == pytest.approx(_energy_1d_normals(delta), abs=0.04)
        values.append(value)
    assert values == sorted(values)


def test_energy_distance_gradients():
    x, y = _sets(n=4, m=3, d=2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(energy_distance, (x, y))
    # A set against itself: zero distances on the diagonal must not give NaN gradients.
    (grad,) = torch.autograd.grad(energy_distance(x, x + 0.0), x)
    assert torch.isfinite(grad).all()


# ---- sliced Wasserstein ----


def test_wasserstein_1d_unequal_sizes_matches_scipy_and_replication():
    g = torch_generator(3)
    u = torch.randn(4, 5, generator=g, dtype=torch.float64)
    v = torch.randn(4, 3, generator=g, dtype=torch.float64) + 0.3
    w1 = wasserstein_1d(u, v, p=1)
    for k in range(4):
        assert float(w1[k]) == pytest.approx(wasserstein_distance(u[k].numpy(), v[k].numpy()), rel=1e-12)
    # Replicating each sample of u 3 times and of v 5 times keeps both distributions: equal-size formula.
    uu, vv = u.repeat_interleave(3, dim=1), v.repeat_interleave(5, dim=1)
    for p in (1.0, 2.0, 3.0):
        torch.testing.assert_close(
            wasserstein_1d(u, v, p), (uu.sort(1).values - vv.sort(1).values).abs().pow(p).mean(1)
        )


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sliced_wasserstein_of_a_1d_shift(p):
    g = torch_generator(11)
    x = torch.randn(500, 1, generator=g, dtype=torch.float64)
    # A shifted copy: every projection (θ = ±1) moves every sample by ±δ, so SW_p = |δ| exactly.
    assert float(sliced_wasserstein(x, x + 1.5, p=p)) == pytest.approx(1.5, rel=1e-12)
    # Unequal sizes in 1-D: both directions ±1 give the 1-D distance between the samples themselves.
    expected = float(wasserstein_1d(x.T, x[:300].T - 0.8, p)) ** (1 / p)
    assert float(sliced_wasserstein(x, x[:300] - 0.8, p=p)) == pytest.approx(expected, rel=1e-12)
    # Independent samples of N(0,1) and N(δ,1): SW_p = δ in expectation.
    y = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    z = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    assert float(sliced_wasserstein(y, z + 2.0, p=p)) == pytest.approx(2.0, abs=0.1)


def test_sliced_wasserstein_of_a_shift_in_d_dimensions():
    # y = x + δ·e₁: the projection on θ moves every sample by δ·θ₁, so SW₂ = δ·sqrt(mean θ₁²) ≈ δ/√d.
    g = torch_generator(2)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    shift = torch.zeros(8, dtype=torch.float64)
    shift[0] = 3.0
    value = float(sliced_wasserstein(x, x + shift, n_projections=4096, seed=9))
    theta = random_directions(4096, 8, generator=torch_generator(9), dtype=torch.float64)
    assert value == pytest.approx(3.0 * float(theta[0].pow(2).mean().sqrt()), rel=1e-10)
    assert value == pytest.approx(3.0 / math.sqrt(8), rel=0.05)


def test_sliced_wasserstein_identical_sets_and_symmetry():
    x, y = _sets(n=20, m=15, d=4)
    assert float(sliced_wasserstein(x, x.clone())) == 0.0
    assert float(sliced_wasserstein(x, y, seed=3)) == pytest.approx(
        float(sliced_wasserstein(y, x, seed=3)), rel=1e-12
    )


def test_sliced_wasserstein_seeding():
    x, y = _sets(n=20, m=15, d=4)
    assert float(sliced_wasserstein(x, y, seed=1)) == float(sliced_wasserstein(x, y, seed=1))
    assert float(sliced_wasserstein(x, y, seed=1)) != float(sliced_wasserstein(x, y, seed=2))
    assert float(sliced_wasserstein(x, y, generator=torch_generator(1))) == float(
        sliced_wasserstein(x, y, seed=1)
    )
    g = torch_generator(4)
    assert float(sliced_wasserstein(x, y, generator=g)) != float(sliced_wasserstein(x, y, generator=g))
    torch.manual_seed(0)
    first = float(sliced_wasserstein(x, y))
    torch.manual_seed(123)
    assert float(sliced_wasserstein(x, y)) == first  # the global RNG plays no part


def test_sliced_wasserstein_gradients():
    x, y = _sets(n=5, m=3, d=2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: sliced_wasserstein(a, b, n_projections=8, seed=0), (x, y))
    (grad,) = torch.autograd.grad(sliced_wasserstein(x, x + 0.0), x)
    assert torch.isfinite(grad).all()


# ---- validation ----


@pytest.mark.parametrize("fn", [mmd, energy_distance, sliced_wasserstein])
def test_distances_validate_inputs(fn):
    x, y = _sets()
    with pytest.raises(InputError, match="empty"):
        fn(x[:0], y)
    with pytest.raises(InputError, match="features"):
        fn(x, y[:, :2])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fn(bad, y)
    with pytest.raises(InputError):
        fn(torch.tensor(1.0), y)


def test_distances_validate_options():
    x, y = _sets()
    with pytest.raises(ConfigError):
        mmd(x, y, estimator="linear")
    with pytest.raises(ConfigError):
        mmd(x, y, kernel_num=0)
    with pytest.raises(ConfigError):
        mmd(x, y, bandwidths=[1.0, -2.0])
    with pytest.raises(ConfigError):
        sliced_wasserstein(x, y, p=0.5)
    with pytest.raises(ConfigError):
        sliced_wasserstein(x, y, n_projections=0)
