"""The SDRM study's attacks (BadNets, Blended, filter, WaNet-style warp) and poisoning of image sets."""

import numpy as np
import pytest
import torch

from exray.attacks import ATTACK_KINDS, AttackRecipe, WarpTrigger, poison_images, triggered_set
from exray.errors import ConfigError, InputError
from exray.triggers import (
    BlendTrigger,
    InstagramFilter,
    PatchTrigger,
    registered_triggers,
    trigger_from_config,
)
from exray.utils import torch_generator

IMAGES = torch.rand(200, 3, 16, 16, generator=torch_generator(0))
LABELS = torch.arange(200) % 4


@pytest.mark.parametrize("kind", ATTACK_KINDS)
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.37])
def test_poisons_exactly_the_requested_fraction(kind, fraction):
    attack = AttackRecipe(kind, target_class=2, fraction=fraction).build(4, seed=3)
    data = poison_images(IMAGES, LABELS, [attack], seed=1)
    n_source = int((LABELS != 2).sum())
    poison = torch.nonzero(data.poisoned).flatten()
    assert poison.numel() == round(fraction * n_source)
    assert len(data) == 200 + poison.numel() and bool((poison >= 200).all())
    assert bool((data.labels[poison] == 2).all()) and bool((data.true_labels[poison] != 2).all())
    # Base rows are the clean images; each poisoned row is its base image with the trigger applied.
    assert torch.equal(data.images[:200], IMAGES) and torch.equal(data.labels[:200], LABELS)
    base = torch.from_numpy(data.plan.base_index[poison.numpy()])
    torch.testing.assert_close(data.images[poison], attack.trigger.apply(IMAGES[base]))
    assert not torch.equal(data.images[poison], IMAGES[base])
    assert data.train_set().poisoned.sum() == poison.numel()


def test_clean_label_stamps_target_images_in_place():
    attack = AttackRecipe("badnets", target_class=1, fraction=0.2, clean_label=True).build(4, seed=0)
    data = poison_images(IMAGES, LABELS, [attack], seed=0)
    poison = torch.nonzero(data.poisoned).flatten()
    assert len(data) == 200 and poison.numel() == round(0.2 * 50)
    assert bool((data.labels[poison] == 1).all()) and bool((data.true_labels[poison] == 1).all())


def test_poisoning_is_seeded():
    attack = AttackRecipe("blended", fraction=0.1).build(4, seed=0)
    a, b = (poison_images(IMAGES, LABELS, [attack], seed=7) for _ in range(2))
    c = poison_images(IMAGES, LABELS, [attack], seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.poisoned, b.poisoned)
    assert not np.array_equal(a.plan.base_index, c.plan.base_index)


def test_recipes_build_the_documented_triggers():
    triggers = {kind: AttackRecipe(kind).build(10, seed=4).trigger for kind in ATTACK_KINDS}
    assert triggers["badnets"] == PatchTrigger((1.0, 0.0, 1.0), 0.125, (1.0, 1.0))
    assert isinstance(triggers["blended"], BlendTrigger) and triggers["blended"].opacity == 0.1
    assert triggers["filter"] == InstagramFilter("kelvin")
    assert isinstance(triggers["warp"], WarpTrigger) and triggers["warp"].strength == 0.5
    attack = AttackRecipe("warp", target_class=3, options={"strength": 1.0}).build(5, seed=4)
    assert attack.source_classes == (0, 1, 2, 4) and attack.trigger.strength == 1.0
    assert AttackRecipe("blended").build(10, 1).trigger != AttackRecipe("blended").build(10, 2).trigger
    recipe = AttackRecipe("badnets", source_classes=[1], options={"size": 0.2, "color": [0, 1, 0]})
    assert recipe.to_dict()["options"] == {"color": [0, 1, 0], "size": 0.2, "location": [1.0, 1.0]}
    assert recipe.build(3, 0).source_classes == (1,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "sig"},
        {"kind": "badnets", "options": {"opacity": 0.1}},
        {"kind": "blended", "options": {"opacity": 0.0}},
        {"kind": "filter", "options": {"name": "sepia"}},
        {"kind": "warp", "options": {"grid": 1}},
        {"kind": "badnets", "fraction": 0.0},
        {"kind": "badnets", "target_class": -1},
    ],
)
def test_invalid_recipes(kwargs):
    with pytest.raises(ConfigError):
        AttackRecipe(**kwargs)


def test_recipe_classes_must_fit_the_task():
    with pytest.raises(ConfigError, match="only 3 classes"):
        AttackRecipe("badnets", target_class=5).build(3, seed=0)


def test_triggered_set_holds_the_source_classes_only():
    attack = AttackRecipe("filter", target_class=0).build(4, seed=0)
    held_out = triggered_set(IMAGES, LABELS, attack, name="f")
    assert len(held_out) == int((LABELS != 0).sum()) and held_out.target_class == 0 and held_out.name == "f"
    torch.testing.assert_close(held_out.images, attack.trigger.apply(IMAGES[LABELS != 0]))
    with pytest.raises(InputError, match="no image"):
        triggered_set(IMAGES[LABELS == 0], LABELS[LABELS == 0], attack)
    with pytest.raises(InputError):
        poison_images(IMAGES, LABELS[:10], [attack], seed=0)


def test_warp_trigger_is_a_smooth_seeded_registered_warp():
    warp = WarpTrigger(seed=3, strength=0.5, grid=4)
    assert registered_triggers()["warp"] is WarpTrigger
    assert trigger_from_config(warp.to_config()) == warp
    out = warp.apply(IMAGES[:4])
    assert out.shape == IMAGES[:4].shape and torch.equal(out, warp.apply(IMAGES[:4]))
    assert 0.0 < float((out - IMAGES[:4]).abs().mean()) < 0.2
    grid = warp.sampling_grid(16, 16)
    identity = WarpTrigger(seed=3, strength=1e-6).sampling_grid(16, 16)
    shift = (grid - identity).abs()
    assert float(shift.max()) <= 0.5 * 2 / 16 * 8  # |offset| ≤ strength·max|field|/H, field mean-normalised
    assert float(shift.mean()) == pytest.approx(0.5 / 16, rel=0.3)  # mean |offset| ≈ strength / H
    # A constant image stays constant away from the clamped border.
    flat = torch.full((1, 3, 16, 16), 0.4)
    torch.testing.assert_close(warp.apply(flat)[..., 2:-2, 2:-2], flat[..., 2:-2, 2:-2])
    assert not torch.equal(WarpTrigger(seed=4).apply(IMAGES[:1]), WarpTrigger(seed=3).apply(IMAGES[:1]))
    for bad in ({"seed": -1}, {"seed": 0, "strength": 0.0}, {"seed": 0, "grid": 1}):
        with pytest.raises(ConfigError):
            WarpTrigger(**bad)
