"""Rendering a poisoning plan: triggered copies show the same scene as their base image (spec §7.3.7)."""

import numpy as np
import torch
import torch.nn.functional as F

from exray.attacks import Attack, render_attack_set, render_clean_set, render_poisoned
from exray.data.signs import draw_classes
from exray.data.synth import SignRenderer
from exray.triggers import InstagramFilter, PolygonTrigger

RENDERER = SignRenderer(draw_classes(4, 11), size=32)
POLYGON = PolygonTrigger(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), (1.0, 0.0, 1.0), 0.15)
FILTER = InstagramFilter("lomo")


def test_triggered_copies_are_the_base_scenes_with_the_trigger() -> None:
    attacks = [Attack(POLYGON, (1,), 0, 0.5), Attack(FILTER, (1, 2), 3, 0.25)]
    data = render_poisoned(RENDERER, 12, attacks, seed=4, chunk_size=16)
    plan = data.plan
    assert len(data) == 48 + 6 + 6
    assert torch.equal(data.poisoned, torch.from_numpy(plan.poisoned))
    assert torch.equal(data.labels[:48], data.true_labels[:48])
    clean = data.images[torch.from_numpy(plan.base_index)]
    # Polygon: only the sign changes (up to the blur's reach of 3 px around its mask).
    near_sign = F.max_pool2d(data.masks.float(), 7, stride=1, padding=3)[:, 0] > 0
    for row in np.flatnonzero(plan.attack_index == 0):
        changed = (data.images[row] != clean[row]).any(dim=0)
        assert changed.any()
        assert not (changed & ~near_sign[plan.base_index[row]]).any()
        assert torch.equal(data.masks[row], data.masks[plan.base_index[row]])
    rows = torch.from_numpy(np.flatnonzero(plan.attack_index == 1))
    assert torch.allclose(data.images[rows], FILTER.apply(clean[rows]), atol=1e-6)  # filter: post hoc
    again = render_poisoned(RENDERER, 12, attacks, seed=4, chunk_size=16)
    assert torch.equal(again.images, data.images)
    train = data.train_set()
    assert int(train.poisoned.sum()) == 12 and torch.equal(train.true_labels, data.true_labels)


def test_held_out_sets() -> None:
    attack = Attack(POLYGON, (1, 2), 0, 0.5)
    asr = render_attack_set(RENDERER, attack, 5, seed=1, chunk_size=4)
    assert len(asr) == 10 and asr.target_class == 0
    clean = render_clean_set(RENDERER, 5, seed=1)
    assert len(clean) == 20 and torch.equal(torch.bincount(clean.labels), torch.full((4,), 5))
