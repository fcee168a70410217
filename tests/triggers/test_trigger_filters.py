"""Instagram filters and the random colour-transform family (spec §7.3.6), and their colour operations."""

import numpy as np
import pytest
import torch

from exray.triggers import INSTAGRAM_FILTERS, ColorTransformFilter, InstagramFilter
from exray.triggers import color_ops as ops


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Smooth, colourful images: a mix of random gradients (mid saturation, full value range)."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(6, 3, 4, 4, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)


def _gray(level: float, size: int = 32) -> torch.Tensor:
    return torch.full((1, 3, size, size), level)


def _saturation(x: torch.Tensor) -> float:
    return ops.rgb_to_hsl(x)[1].mean().item()


def _red_minus_blue(x: torch.Tensor) -> float:
    return (x[:, 0] - x[:, 2]).mean().item()


def _corner_ratio(x: torch.Tensor) -> float:
    corner = x[..., :4, :4].mean().item()
    centre = x[..., 14:18, 14:18].mean().item()
    return corner / centre


@pytest.mark.parametrize("name", list(INSTAGRAM_FILTERS))
def test_filters_keep_shape_and_range_and_change_colours(images: torch.Tensor, name: str) -> None:
    out = InstagramFilter(name).apply(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out - images).abs().mean() > 0.03
    assert torch.equal(out, InstagramFilter(name).apply(images))


def test_gotham_desaturates_and_turns_blue(images: torch.Tensor) -> None:
    out = InstagramFilter("gotham").apply(images)
    assert _saturation(out) < 0.5 * _saturation(images)
    assert _red_minus_blue(out) < _red_minus_blue(images) - 0.02
    gray = InstagramFilter("gotham").apply(_gray(0.3))
    assert gray[0, 2].mean() > gray[0, 0].mean() + 0.02  # blue cast on neutral tones
    assert gray.mean() < 0.3  # darker shadows


def test_nashville_blue_shadows_warm_highlights(images: torch.Tensor) -> None:
    dark = InstagramFilter("nashville").apply(_gray(0.15))
    bright = InstagramFilter("nashville").apply(_gray(0.85))
    assert dark[0, 2].mean() > dark[0, 0].mean()
    assert bright[0, 0].mean() > bright[0, 2].mean()
    out = InstagramFilter("nashville").apply(images)
    assert _saturation(out) > _saturation(images)
    assert abs(out.mean().item() - 0.5) < 0.08  # auto-gamma pulls the mean to mid-gray


def test_kelvin_warms(images: torch.Tensor) -> None:
    out = InstagramFilter("kelvin").apply(images)
    assert _red_minus_blue(out) > _red_minus_blue(images) + 0.05
    gray = InstagramFilter("kelvin").apply(_gray(0.5))
    assert gray[0, 0].mean() > gray[0, 1].mean() > gray[0, 2].mean()


def test_lomo_darkens_corners_and_cuts_red_green(images: torch.Tensor) -> None:
    gray = InstagramFilter("lomo").apply(_gray(0.8))
    assert _corner_ratio(gray) < 0.3
    assert gray[0, 2].mean() > gray[0, 0].mean()
    assert _corner_ratio(InstagramFilter("lomo").apply(images)) < 0.5 * _corner_ratio(images)


def test_toaster_warm_centre_dark_rim() -> None:
    out = InstagramFilter("toaster").apply(_gray(0.5))
    red_blue = out[0, 0] / out[0, 2]
    assert red_blue[14:18, 14:18].mean() > red_blue[:4, :4].mean() + 0.3
    assert out[0, 0, :4, :4].mean() < out[0, 0, 14:18, 14:18].mean()


def test_color_ops_basics(images: torch.Tensor) -> None:
    assert torch.allclose(ops.hsl_to_rgb(*ops.rgb_to_hsl(images)), images, atol=1e-5)
    assert torch.allclose(ops.modulate(images), images, atol=1e-5)
    ramp = torch.linspace(0, 1, 11).reshape(1, 1, 1, 11).expand(1, 3, 1, 11)
    contrast = ops.sigmoidal_contrast(ramp, 3.0, 0.5)
    assert torch.allclose(contrast[..., [0, 5, 10]], torch.tensor([0.0, 0.5, 1.0]), atol=1e-6)
    assert (contrast[..., 1:5] < ramp[..., 1:5]).all() and (contrast[..., 6:10] > ramp[..., 6:10]).all()
    assert ops.gamma(_gray(0.5), 2.0).mean().item() == pytest.approx(0.5**0.5, abs=1e-6)
    assert ops.auto_gamma(_gray(0.2)).mean().item() == pytest.approx(0.5, abs=1e-5)
    leveled = ops.level(_gray(0.75), black=0.5, channels=(0,))
    assert leveled[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.75, 0.75])
    shadows = ops.colortone(torch.cat([_gray(0.0), _gray(1.0)]), (1.0, 0.0, 0.0), 0.5, shadows=True)
    assert shadows[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.0, 0.0]) and torch.allclose(
        shadows[1], _gray(1.0)[0]
    )
    assert ops.hex_rgb("#ff9900") == pytest.approx((1.0, 0.6, 0.0))


def test_random_color_transform_is_seeded(images: torch.Tensor) -> None:
    a, b, c = (
        ColorTransformFilter.random(3),
        ColorTransformFilter.random(np.random.default_rng(3)),
        ColorTransformFilter.random(4),
    )
    assert a == b and a != c
    assert torch.equal(a.apply(images), b.apply(images))
    assert not torch.allclose(a.apply(images), c.apply(images))
    out = a.apply(images)
    assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0
    family = [ColorTransformFilter.random(s) for s in range(40)]
    assert any(f.vignette == 0.0 for f in family) and any(f.vignette > 0.0 for f in family)
    assert all(0.7 <= f.gamma <= 1.4 for f in family)


def test_color_transform_formula() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    identity = ColorTransformFilter(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
    assert torch.allclose(identity.apply(x), x.clamp(min=1e-6), atol=1e-6)
    swap = ColorTransformFilter(
        ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)), bias=(0.0, 0.1, 0.0), gamma=2.0
    )
    expected = torch.stack([x[:, 2], (x[:, 1] + 0.1).clamp(max=1.0), x[:, 0]], dim=1).clamp(min=1e-6) ** 2
    assert torch.allclose(swap.apply(x), expected, atol=1e-6)
    vignetted = ColorTransformFilter(identity.matrix, vignette=0.5).apply(_gray(0.8))
    assert _corner_ratio(vignetted) < 0.75
