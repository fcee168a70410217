"""The TrojAI-like sign generator (spec §7.3.1–7.3.5): classes, determinism, sizes, areas, triggers."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from exray.data.datasets import render_dataset, render_train_test, sign_area_fraction
from exray.data.signs import (
    GLYPH_ON_FILL,
    PALETTE,
    SHAPES,
    SignClass,
    classes_from_config,
    classes_to_config,
    contrasting_colors,
    draw_classes,
    find_confusion_pairs,
)
from exray.data.synth import AugmentOptions, SignRenderer
from exray.data.templates import sign_template
from exray.errors import ConfigError, InputError
from exray.triggers import InstagramFilter, PatchTrigger, PolygonTrigger

#: draw_classes(8, seed=3, confusion_pairs=2)[:3] as drawn before the shared-fill design existed (107c462).
V1_LOOKS = [
    ("diamond", "green", None, "yellow"),
    ("pentagon", "yellow", "green", "black"),
    ("circle", "black", "yellow", "white"),
]


@pytest.fixture(scope="module")
def classes() -> list[SignClass]:
    return draw_classes(8, seed=3, confusion_pairs=2)


@pytest.fixture(scope="module")
def renderer(classes: list[SignClass]) -> SignRenderer:
    return SignRenderer(classes, size=32)


def test_population_v1_draws_are_unchanged_by_the_shared_fill_design() -> None:
    """fills=None is the v1 design: the draws every zoo built before issue 16 was trained on."""
    looks = [(c.shape, c.fill, c.border, c.glyph_color) for c in draw_classes(8, seed=3, confusion_pairs=2)]
    assert looks[:3] == V1_LOOKS


def test_draw_classes_is_seeded(classes: list[SignClass]) -> None:
    assert classes_to_config(draw_classes(8, seed=3, confusion_pairs=2)) == classes_to_config(classes)
    assert classes_to_config(draw_classes(8, seed=4, confusion_pairs=2)) != classes_to_config(classes)


def test_confusion_pairs_share_everything_but_the_glyph(classes: list[SignClass]) -> None:
    pairs = find_confusion_pairs(classes)
    assert len(pairs) == 2
    for i, j in pairs:
        a, b = classes[i], classes[j]
        assert (a.shape, a.fill, a.border, a.border_width, a.glyph_color) == (
            b.shape,
            b.fill,
            b.border,
            b.border_width,
            b.glyph_color,
        )
        assert a.glyph != b.glyph
        # Different glyphs draw different templates on the same outline.
        ta, tb = sign_template(a, 32), sign_template(b, 32)
        assert torch.equal(ta[3], tb[3]) and not torch.equal(ta[:3], tb[:3])
    paired = {i for pair in pairs for i in pair}
    looks = [(c.shape, c.fill) for k, c in enumerate(classes) if k not in paired]
    looks += [(classes[i].shape, classes[i].fill) for i, _ in pairs]
    assert len(set(looks)) == len(looks)  # every other class has its own shape/colour look


@pytest.mark.parametrize(("num_classes", "pairs"), [(2, 0), (5, 0), (6, 1), (8, 2), (15, 1)])
def test_shared_fill_classes_are_not_told_apart_by_fill_alone(num_classes: int, pairs: int) -> None:
    fills = ("red", "blue", "white")
    for seed in range(5):
        classes = draw_classes(num_classes, seed=seed, confusion_pairs=pairs, fills=fills)
        assert len(classes) == num_classes
        assert len(find_confusion_pairs(classes)) == pairs
        wearers = {fill: sum(c.fill == fill for c in classes) for fill in {c.fill for c in classes}}
        assert set(wearers) <= set(fills)
        assert min(wearers.values()) >= 2  # every fill colour is worn by two classes or more
        looks = {(c.shape, c.fill) for c in classes}
        assert len(looks) == num_classes - pairs  # distinct looks except the confusion pairs
    same = draw_classes(8, seed=1, confusion_pairs=1, fills=fills)
    assert classes_to_config(same) == classes_to_config(draw_classes(8, 1, 1, fills=fills))


@pytest.mark.parametrize(("num_classes", "pairs"), [(5, 0), (6, 1), (7, 0), (8, 1), (12, 1)])
def test_without_colour_cues_classes_differ_by_shape_and_glyph_only(num_classes: int, pairs: int) -> None:
    """colour_cues=False: no borders, one glyph colour per fill, distinct shapes while shapes last — so a
    colour filter cannot turn one class's colours into another's (issue 16, the v2 demo)."""
    for seed in range(5):
        classes = draw_classes(num_classes, seed, pairs, fills=("red", "blue", "white"), colour_cues=False)
        assert all(c.border is None and c.glyph_color == GLYPH_ON_FILL[c.fill] for c in classes)
        assert len(find_confusion_pairs(classes)) == pairs
        looks = num_classes - pairs
        shapes = {c.shape for c in classes}
        assert len(shapes) == min(looks, len(SHAPES))
        assert min(sum(c.fill == f for c in classes) for f in {c.fill for c in classes}) >= 2
    with pytest.raises(ConfigError, match="needs the shared fill colours"):
        draw_classes(5, 0, colour_cues=False)


def test_shared_fill_design_rejects_what_it_cannot_draw() -> None:
    with pytest.raises(ConfigError, match="unknown colour 'teal'"):
        draw_classes(4, seed=0, fills=("red", "teal"))
    with pytest.raises(ConfigError, match="non-empty"):
        draw_classes(4, seed=0, fills=())
    with pytest.raises(ConfigError, match="twice"):
        draw_classes(10, seed=0, fills=("red", "red"))
    with pytest.raises(ConfigError, match="shapes per fill"):
        draw_classes(10, seed=0, fills=("red",))


def test_classes_have_contrasting_valid_parts() -> None:
    for sign in draw_classes(30, seed=11):
        assert sign.shape in SHAPES and sign.fill in PALETTE
        assert sign.glyph_color in contrasting_colors(sign.fill)
        assert 1 <= len(sign.glyph) <= 3
        if sign.border is not None:
            assert sign.border in contrasting_colors(sign.fill)
            assert 0.04 <= sign.border_width <= 0.10


def test_class_descriptions_round_trip_through_json(classes: list[SignClass]) -> None:
    config = json.loads(json.dumps(classes_to_config(classes)))
    assert classes_from_config(config) == classes


@pytest.mark.parametrize(
    "kwargs",
    [{"num_classes": 0}, {"num_classes": 4, "confusion_pairs": 3}, {"num_classes": 60}],
)
def test_draw_classes_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        draw_classes(seed=0, **kwargs)


def test_bad_class_config_is_rejected(classes: list[SignClass]) -> None:
    config = classes_to_config(classes)[0]
    with pytest.raises(ConfigError):
        SignClass.from_dict({**config, "shape": "hexagram"})
    with pytest.raises(ConfigError):
        SignClass.from_dict({k: v for k, v in config.items() if k != "fill"})


def test_same_seed_is_bit_identical_and_other_seeds_differ(classes: list[SignClass]) -> None:
    labels = np.arange(24) % len(classes)
    a = SignRenderer(classes, size=32).render(labels, 7)
    b = SignRenderer(classes, size=32).render(labels, np.random.default_rng(7))
    c = SignRenderer(classes, size=32).render(labels, 8)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    per_image_diff = (a.images - c.images).abs().flatten(1).amax(dim=1)
    assert (per_image_diff > 0.1).all()


@pytest.mark.parametrize("size", [32, 64, 224])
def test_all_sizes_render_valid_images(classes: list[SignClass], size: int) -> None:
    n = 4 if size == 224 else 12
    batch = SignRenderer(classes, size=size).render(np.arange(n) % len(classes), 0)
    assert batch.images.shape == (n, 3, size, size) and batch.images.dtype == torch.float32
    assert batch.masks.shape == (n, 1, size, size) and batch.masks.dtype == torch.bool
    assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
    assert torch.equal(batch.labels, torch.arange(n) % len(classes))
    assert (batch.images.flatten(1).std(dim=1) > 0.02).all()  # not blank


def test_sign_area_stays_in_bounds(classes: list[SignClass]) -> None:
    labels = np.arange(160) % len(classes)
    area = sign_area_fraction(SignRenderer(classes, size=64).render(labels, 1).masks)
    assert area.min() >= 0.19 and area.max() <= 0.81
    assert area.min() < 0.3 and area.max() > 0.65  # the whole range is used

    narrow = SignRenderer(classes, size=32, options=AugmentOptions(sign_area=(0.3, 0.4)))
    area = sign_area_fraction(narrow.render(labels, 2).masks)
    assert area.min() >= 0.27 and area.max() <= 0.43


def test_masks_cover_the_sign(classes: list[SignClass]) -> None:
    """With augmentation switched off, the masked pixels carry the sign's own palette colours."""
    plain = AugmentOptions(
        rotation_deg=0.0,
        perspective=0.0,
        brightness=(1.0, 1.0),
        gamma=(1.0, 1.0),
        blur_sigma=0.0,
        noise_sigma=0.0,
        weather_prob=0.0,
    )
    sign = classes[0]
    batch = SignRenderer([sign], size=64, options=plain).render(np.zeros(6, dtype=int), 5)
    eroded = -F.max_pool2d(-batch.masks.float(), 5, stride=1, padding=2) > 0.5
    colours = torch.tensor(
        [PALETTE[c] for c in (sign.fill, sign.glyph_color, sign.border) if c is not None], dtype=torch.float32
    )
    pixels = batch.images.permute(0, 2, 3, 1)[eroded[:, 0]] * 255.0
    nearest = torch.cdist(pixels, colours).min(dim=1).values
    assert (nearest < 40.0).float().mean() > 0.95


def test_polygon_trigger_changes_only_the_sign(classes: list[SignClass], renderer: SignRenderer) -> None:
    labels = np.arange(16) % len(classes)
    trigger = PolygonTrigger.random(5, size_range=(0.1, 0.2))
    clean = renderer.render(labels, 9)
    poisoned = renderer.render(labels, 9, triggers=trigger)
    assert torch.equal(clean.masks, poisoned.masks)
    changed = (clean.images - poisoned.images).abs().amax(dim=1) > 1e-6
    near_sign = F.max_pool2d(clean.masks.float(), 9, stride=1, padding=4)[:, 0] > 0
    assert changed.flatten(1).any(dim=1).all()
    assert not (changed & ~near_sign).any()


def test_per_sample_triggers_and_post_hoc_equivalence(renderer: SignRenderer) -> None:
    labels = np.arange(6)
    gotham = InstagramFilter("gotham")
    patch = PatchTrigger((1.0, 0.0, 1.0), 0.2)
    clean = renderer.render(labels, 4)
    mixed = renderer.render(labels, 4, triggers=[gotham, gotham, None, patch, None, patch])
    assert torch.allclose(mixed.images[:2], gotham.apply(clean.images[:2]), atol=1e-6)
    assert torch.equal(mixed.images[[2, 4]], clean.images[[2, 4]])
    assert torch.equal(mixed.images[[3, 5]], patch.apply(clean.images[[3, 5]]))


def test_render_rejects_bad_input(renderer: SignRenderer, classes: list[SignClass]) -> None:
    with pytest.raises(InputError):
        renderer.render([0, len(classes)], 0)
    with pytest.raises(InputError):
        renderer.render([0, 1], 0, triggers=[None])
    with pytest.raises(ConfigError):
        AugmentOptions(sign_area=(0.5, 0.2))
    with pytest.raises(ConfigError):
        SignRenderer(classes, size=4)


def test_augment_options_round_trip() -> None:
    options = AugmentOptions(sign_area=(0.25, 0.6), photo_fraction=0.0)
    assert AugmentOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    with pytest.raises(ConfigError):
        AugmentOptions.from_dict({"zoom": 0.1})


def test_render_dataset_is_balanced_and_seeded(classes: list[SignClass]) -> None:
    data = render_dataset(classes, 3, seed=1, chunk_size=10)
    assert len(data) == 3 * len(classes)
    assert torch.equal(torch.bincount(data.labels), torch.full((len(classes),), 3))
    assert data.images.shape == (len(data), 3, 32, 32) and data.masks.shape == (len(data), 1, 32, 32)
    again = render_dataset(classes, 3, seed=1, chunk_size=10)
    assert torch.equal(data.images, again.images) and torch.equal(data.labels, again.labels)
    train, test = render_train_test(classes, 2, 1, seed=1)
    assert len(train) == 2 * len(classes) and len(test) == len(classes)
    assert not torch.equal(train.images[: len(test)], test.images)
