"""The reflection trigger (Refool, Liu et al. ECCV'20; issue 19 §1): its three reflection models in closed
form, serialisation, and the study recipe that builds it."""

import pytest
import torch

from exray.attacks import AttackRecipe
from exray.errors import ConfigError
from exray.triggers import ReflectionTrigger, registered_triggers, trigger_from_config
from exray.triggers.patch import photo_pattern


def test_the_three_reflection_models():
    images = torch.full((2, 3, 20, 40), 0.5)
    photo = photo_pattern("colorwheel", 20, 40)
    focus = ReflectionTrigger("colorwheel", "focus", weight=0.25)
    torch.testing.assert_close(focus.apply(images), (0.75 * images + 0.25 * photo).clamp(0, 1))
    ghost = ReflectionTrigger("colorwheel", "ghost", weight=0.25, ghost=0.5, offset=(0.1, -0.05))
    shifted = torch.roll(photo, shifts=(2, -2), dims=(1, 2))  # 0.1 × 20 rows down, 0.05 × 40 columns left
    torch.testing.assert_close(ghost.reflection(20, 40), (photo + 0.5 * shifted) / 1.5)
    blur = ReflectionTrigger("colorwheel", "blur", sigma=2.0).reflection(20, 40)
    assert blur.shape == photo.shape and blur.std() < photo.std()  # smoother
    torch.testing.assert_close(blur.mean(), photo.mean(), atol=0.02, rtol=0)  # a blur keeps the mean


def test_serialisation_and_validation():
    trigger = ReflectionTrigger("retina", "blur", 0.4, 2.5, 0.3, (0.1, 0.2))
    assert registered_triggers()["reflection"] is ReflectionTrigger
    assert trigger_from_config(trigger.to_config()) == trigger
    for bad in ({"photo": "cat"}, {"mode": "mirror"}, {"weight": 0.0}, {"sigma": 0.0}, {"offset": (0.9, 0)}):
        with pytest.raises(ConfigError):
            ReflectionTrigger(**bad)


def test_the_study_recipe_builds_a_clean_label_reflection_attack():
    recipe = AttackRecipe("reflection", target_class=2, clean_label=True, options={"mode": "blur"})
    attack = recipe.build(5, seed=0)
    assert isinstance(attack.trigger, ReflectionTrigger) and attack.trigger.mode == "blur"
    assert attack.clean_label and attack.target_class == 2
