"""The TrojAI polygon trigger (spec §7.3.5): shape recipe, size, placement inside the foreground."""

import numpy as np
import pytest
import torch

from exray.errors import ConfigError, InputError
from exray.triggers import PolygonTrigger


def _disc(size: int = 64, radius: float = 26.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2)[None, None]


def _angles_sorted(vertices: np.ndarray) -> bool:
    centroid = vertices.mean(axis=0)
    angles = np.unwrap(np.arctan2(vertices[:, 1] - centroid[1], vertices[:, 0] - centroid[0]))
    steps = np.diff(np.append(angles, angles[0] + 2 * np.pi))
    return bool((steps > 0).all() or (steps < 0).all())


def test_random_polygons_follow_the_trojai_recipe() -> None:
    triggers = [PolygonTrigger.random(seed) for seed in range(300)]
    sides = {t.sides for t in triggers}
    assert sides == set(range(3, 13))
    for t in triggers:
        v = np.asarray(t.vertices)
        assert np.allclose(v.min(axis=0), 0.0) and np.allclose(v.max(axis=0), 1.0)  # bbox fills the square
        assert _angles_sorted(v)
        assert 0.02 <= t.size <= 0.25
        assert all(0.0 <= c <= 1.0 and abs(c * 255 - round(c * 255)) < 1e-9 for c in t.color)
    colours = np.array([t.color for t in triggers])
    assert colours.std(axis=0).min() > 0.2  # uniform random RGB, not a fixed palette


def test_random_is_seeded() -> None:
    assert PolygonTrigger.random(4) == PolygonTrigger.random(np.random.default_rng(4))
    assert PolygonTrigger.random(4) != PolygonTrigger.random(5)


@pytest.mark.parametrize("size", [0.02, 0.1, 0.25])
def test_stamp_area_is_the_requested_fraction_of_the_foreground(size: float) -> None:
    fg = _disc()
    images = torch.zeros(8, 3, 64, 64)
    for seed in range(8):
        trigger = PolygonTrigger.random(seed, size_range=(size, size))
        out = trigger.apply(images[:1], foreground=fg, rng=np.random.default_rng(seed))
        stamped = (out != 0).any(dim=1)
        ratio = stamped.sum().item() / fg.sum().item()
        assert 0.75 * size <= ratio <= 1.25 * size


def test_stamp_stays_inside_the_mask_and_has_the_trigger_colour() -> None:
    rng = np.random.default_rng(0)
    masks = torch.zeros(6, 1, 48, 48, dtype=torch.bool)
    masks[0, 0, 10:40, 5:20] = True  # a thin rectangle
    masks[1:3] = _disc(48, 20.0)
    masks[3:, 0, 30:, 20:] = True  # a corner block
    images = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 0.5
    trigger = PolygonTrigger.random(7, size_range=(0.2, 0.25))
    out = trigger.apply(images, foreground=masks, rng=rng)
    changed = (out != images).any(dim=1, keepdim=True)
    assert changed.flatten(1).any(dim=1).all()
    assert not (changed & ~masks).any()
    colour = torch.tensor(trigger.color)
    pixels = out.permute(0, 2, 3, 1)[changed[:, 0]]
    assert torch.allclose(pixels, colour.expand_as(pixels))
    assert torch.equal(out[~changed.expand_as(out)], images[~changed.expand_as(images)])


def test_placement_is_random_and_seeded() -> None:
    fg = _disc().expand(10, 1, 64, 64)
    images = torch.zeros(10, 3, 64, 64)
    trigger = PolygonTrigger.random(3, size_range=(0.03, 0.03))
    a = trigger.apply(images, foreground=fg, rng=np.random.default_rng(1))
    b = trigger.apply(images, foreground=fg, rng=np.random.default_rng(1))
    assert torch.equal(a, b)
    centres = [torch.nonzero(a[i].any(dim=0)).float().mean(dim=0) for i in range(10)]
    spread = torch.stack(centres).std(dim=0)
    assert (spread > 5.0).all()


@pytest.mark.parametrize("region", ["top_left", "top_right", "bottom_left", "bottom_right"])
def test_spatial_condition_confines_the_stamp_to_a_quadrant(region: str) -> None:
    fg = _disc().expand(6, 1, 64, 64)
    trigger = PolygonTrigger.random(2, size_range=(0.04, 0.04), region=region)
    out = trigger.apply(torch.zeros(6, 3, 64, 64), foreground=fg, rng=np.random.default_rng(0))
    rows, cols = torch.nonzero(out.any(dim=1), as_tuple=True)[1:]
    top, left = region.startswith("top"), region.endswith("left")
    assert ((rows < 32) if top else (rows >= 32)).all()
    assert ((cols < 32) if left else (cols >= 32)).all()


def test_polygon_needs_a_foreground() -> None:
    trigger = PolygonTrigger.random(0)
    with pytest.raises(InputError):
        trigger.apply(torch.zeros(1, 3, 16, 16))
    with pytest.raises(InputError):
        trigger.apply(torch.zeros(1, 3, 16, 16), foreground=torch.zeros(1, 1, 16, 16, dtype=torch.bool))
    with pytest.raises(InputError):
        trigger.apply(torch.zeros(1, 3, 16, 16), foreground=torch.ones(1, 1, 8, 8, dtype=torch.bool))


def test_invalid_polygons_are_rejected() -> None:
    with pytest.raises(ConfigError):
        PolygonTrigger(((0.0, 0.0), (1.0, 1.0)), (1.0, 0.0, 0.0), 0.1)
    with pytest.raises(ConfigError):
        PolygonTrigger(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)), (1.0, 0.0, 0.0), 1.5)
    with pytest.raises(ConfigError):
        PolygonTrigger(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)), (1.0, 0.0, 0.0), 0.1, region="middle")
    with pytest.raises(ConfigError):
        PolygonTrigger.random(0, size_range=(0.3, 0.1))
