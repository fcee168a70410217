"""Trigger serialisation, the registry, and the solid-patch and blend triggers."""

import json
from typing import ClassVar

import numpy as np
import pytest
import torch

from exray.errors import ConfigError, InputError
from exray.triggers import (
    BlendTrigger,
    ColorTransformFilter,
    InstagramFilter,
    PatchTrigger,
    PolygonTrigger,
    Trigger,
    register_trigger,
    registered_triggers,
    trigger_from_config,
)

EXAMPLES = [
    PolygonTrigger.random(1),
    PolygonTrigger.random(2, region="bottom_right"),
    PatchTrigger((0.2, 0.4, 0.6), 0.15, (0.25, 0.75)),
    BlendTrigger(seed=9),
    BlendTrigger(seed=10, opacity=0.3),
    BlendTrigger(seed=0, opacity=0.1, photo="colorwheel"),
    *(InstagramFilter(name) for name in ("gotham", "nashville", "kelvin", "lomo", "toaster")),
    ColorTransformFilter.random(1),
    ColorTransformFilter.random(2),
]


@pytest.mark.parametrize("trigger", EXAMPLES, ids=lambda t: t.type)
def test_config_round_trips_exactly_through_json(trigger: Trigger) -> None:
    config = trigger.to_config()
    restored = trigger_from_config(json.loads(json.dumps(config)))
    assert type(restored) is type(trigger) and restored == trigger
    assert restored.to_config() == config
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 1, 24, 24, dtype=torch.bool)
    masks[:, :, 4:20, 4:20] = True
    a = trigger.apply(images, foreground=masks, rng=np.random.default_rng(0))
    b = restored.apply(images, foreground=masks, rng=np.random.default_rng(0))
    assert torch.equal(a, b)


def test_registry_knows_the_builtin_types() -> None:
    assert {"polygon", "patch", "blend", "instagram", "color_transform"} <= set(registered_triggers())


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ConfigError):
        trigger_from_config({"type": "no-such-trigger"})
    with pytest.raises(ConfigError):
        trigger_from_config({"name": "gotham"})
    with pytest.raises(ConfigError):
        trigger_from_config({"type": "instagram", "name": "valencia"})
    with pytest.raises(ConfigError):
        trigger_from_config({"type": "instagram", "name": "gotham", "strength": 2})
    with pytest.raises(ConfigError):
        PatchTrigger.from_config({"type": "blend", "seed": 1, "opacity": 0.1})
    with pytest.raises(ConfigError):
        trigger_from_config({**PatchTrigger((1.0, 0.0, 0.0), 0.1).to_config(), "color": [2.0, 0.0, 0.0]})


def test_registering_a_taken_type_fails() -> None:
    class Impostor(PatchTrigger):
        type: ClassVar[str] = "patch"

    with pytest.raises(ConfigError):
        register_trigger(Impostor)


def test_inputs_are_validated() -> None:
    with pytest.raises(InputError):
        InstagramFilter("gotham").apply(torch.rand(2, 1, 8, 8))
    with pytest.raises(InputError):
        PatchTrigger((1.0, 0.0, 0.0), 0.1).apply(torch.full((1, 3, 8, 8), float("nan")))


def test_patch_is_a_solid_square_at_its_location() -> None:
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    out = PatchTrigger((1.0, 0.5, 0.0), 0.2).apply(images)  # default: bottom-right corner
    assert torch.equal(
        out[:, :, 32:, 32:], torch.tensor([1.0, 0.5, 0.0])[None, :, None, None].expand(3, 3, 8, 8)
    )
    outside = torch.ones(40, 40, dtype=torch.bool)
    outside[32:, 32:] = False
    assert torch.equal(out[:, :, outside], images[:, :, outside])
    assert PatchTrigger((0.0, 0.0, 0.0), 0.25, (0.0, 0.0)).box(40, 40) == (0, 0, 10)
    assert PatchTrigger((0.0, 0.0, 0.0), 0.25, (0.5, 1.0)).box(40, 40) == (30, 15, 10)


def test_blend_with_a_photo_mixes_the_area_resampled_photograph() -> None:
    from skimage import data as skdata

    photo = torch.from_numpy(skdata.immunohistochemistry()).permute(2, 0, 1)[None].float() / 255.0
    expected = torch.nn.functional.interpolate(photo, size=(16, 12), mode="area")[0]
    trigger = BlendTrigger(seed=1, photo="immunohistochemistry")
    assert torch.allclose(trigger.pattern(16, 12), expected)
    assert torch.equal(
        trigger.pattern(16, 12), BlendTrigger(seed=2, photo="immunohistochemistry").pattern(16, 12)
    )
    images = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(trigger.apply(images), 0.9 * images + 0.1 * expected[None], atol=1e-6)
    with pytest.raises(ConfigError, match="photo"):
        BlendTrigger(seed=1, photo="astronaut")  # a sign-background photo: not a blend pattern


def test_blend_mixes_a_seeded_pattern() -> None:
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    trigger = BlendTrigger(seed=5)
    pattern = trigger.pattern(16, 16)
    assert torch.allclose(trigger.apply(images), 0.9 * images + 0.1 * pattern[None], atol=1e-6)
    assert torch.equal(pattern, BlendTrigger(seed=5, opacity=0.5).pattern(16, 16))
    assert not torch.equal(pattern, BlendTrigger(seed=6).pattern(16, 16))
    assert 0.4 < pattern.mean().item() < 0.6 and pattern.min() >= 0.0 and pattern.max() <= 1.0
