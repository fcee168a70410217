"""MS-SSIM as spec §1 defines it: closed forms, value-range detection, window shrinking, per-image scoring."""

import math

import pytest
import torch

from exray.errors import InputError
from exray.scanners.ssim import MS_SSIM_WEIGHTS, gaussian_window, ms_ssim, value_range


def _constant(value: float, size: int = 32, n: int = 1) -> torch.Tensor:
    return torch.full((n, 3, size, size), value, dtype=torch.float64)


def _closed_form(a: float, b: float, big_l: float) -> float:
    """Two constant images: every contrast term is C2/C2 = 1 and the last scale's SSIM is the luminance
    term, which the reference combination raises to 4·w5."""
    c1 = (0.01 * big_l) ** 2
    lum = (2 * a * b + c1) / (a * a + b * b + c1)
    return lum ** (4 * MS_SSIM_WEIGHTS[-1])


def test_identical_images_score_one():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ms_ssim(x, x), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize(("a", "b", "big_l"), [(0.2, 0.6, 1.0), (200.0, 100.0, 255.0), (-0.8, -0.3, 2.0)])
def test_constant_images_match_the_closed_form_and_detect_the_value_range(a, b, big_l):
    got = float(ms_ssim(_constant(a), _constant(b)))
    assert got == pytest.approx(_closed_form(a, b, big_l), rel=1e-9)


def test_value_range_is_read_from_the_first_image_only():
    assert value_range(_constant(0.5)).item() == 1.0
    assert value_range(_constant(200.0)).item() == 255.0
    assert value_range(_constant(-1.0)).item() == 2.0
    mixed = torch.cat([_constant(0.5), _constant(200.0)])
    assert value_range(mixed).flatten().tolist() == [1.0, 255.0]


def test_each_image_is_scored_alone():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(5, 3, 32, 32, generator=gen), torch.rand(5, 3, 32, 32, generator=gen)
    y[2] = x[2] * 0.5 + 0.25
    batch = ms_ssim(x, y)
    single = torch.cat([ms_ssim(x[i : i + 1], y[i : i + 1]) for i in range(5)])
    assert torch.allclose(batch, single, atol=1e-6)
    assert batch[2] > batch[[0, 1, 3, 4]].max()  # a contrast change keeps more structure than noise
    assert ((batch > 0) & (batch <= 1 + 1e-6)).all()


def test_window_shrinks_to_the_image_and_keeps_the_reference_centre():
    g = gaussian_window(2)
    expected = torch.tensor([math.exp(-1 / 4.5), 1.0], dtype=torch.float64)
    assert torch.allclose(g, expected / expected.sum())
    assert torch.allclose(gaussian_window(11).sum(), torch.tensor(1.0, dtype=torch.float64))
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))  # the last scale is 1×1
    value = ms_ssim(x, (x + 0.05).clamp(0, 1))
    assert torch.isfinite(value).all() and (value > 0.5).all() and (value < 1).all()


def test_images_too_small_for_five_scales_are_rejected():
    with pytest.raises(InputError, match="16×16"):
        ms_ssim(torch.rand(1, 3, 15, 15), torch.rand(1, 3, 15, 15))
    with pytest.raises(InputError):
        ms_ssim(torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32))


def test_anti_correlated_images_stay_finite_and_differentiable():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
    value = ms_ssim(x, 1.0 - x.detach())
    value.sum().backward()
    assert torch.isfinite(value).all() and float(value.detach()) < 0.1
    assert torch.isfinite(x.grad).all()
