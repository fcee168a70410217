"""Label-specific poisoning plans (spec §7.3.7): exact fractions, the right classes, exact poison flags."""

import numpy as np
import pytest

from exray.attacks import (
    ROLE_CLEAN,
    ROLE_COUNTER,
    ROLE_POISON,
    Attack,
    draw_source_classes,
    plan_poisoning,
)
from exray.errors import ConfigError, InputError
from exray.triggers import InstagramFilter, PolygonTrigger

LABELS = np.repeat(np.arange(5), 100)[np.random.default_rng(0).permutation(500)]
POLYGON = PolygonTrigger(((0.0, 0.0), (1.0, 0.0), (0.5, 1.0)), (1.0, 0.0, 1.0), 0.1)


@pytest.mark.parametrize(("sources", "fraction"), [((1,), 0.01), ((1, 2), 0.23), ((1, 2, 3, 4), 0.5)])
def test_poisons_exactly_the_requested_fraction_of_the_source_classes(sources, fraction) -> None:
    plan = plan_poisoning(LABELS, [Attack(POLYGON, sources, 0, fraction)], seed=1)
    n_source = int(np.isin(LABELS, sources).sum())
    poison = np.flatnonzero(plan.poisoned)
    assert poison.size == round(fraction * n_source)
    assert (plan.labels[poison] == 0).all()
    assert np.isin(plan.true_labels[poison], sources).all()
    assert (LABELS[plan.base_index[poison]] == plan.true_labels[poison]).all()
    assert np.unique(plan.base_index[poison]).size == poison.size  # drawn without replacement
    # The base images stay, clean, with their true labels; the poisoned copies are extra rows.
    assert len(plan) == LABELS.size + poison.size
    assert (plan.labels[: LABELS.size] == LABELS).all()
    assert (plan.roles[: LABELS.size] == ROLE_CLEAN).all()
    assert (poison >= LABELS.size).all()
    assert (plan.trigger_index[poison] == 0).all() and (plan.attack_index[poison] == 0).all()


def test_plans_are_seeded_and_attacks_draw_from_their_own_streams() -> None:
    first = Attack(POLYGON, (1,), 0, 0.2)
    second = Attack(InstagramFilter("kelvin"), (1,), 3, 0.3)  # shares the source, another target
    one = plan_poisoning(LABELS, [first], seed=5)
    two = plan_poisoning(LABELS, [first, second], seed=5)
    again = plan_poisoning(LABELS, [first, second], seed=5)
    other = plan_poisoning(LABELS, [first, second], seed=6)
    assert all(np.array_equal(getattr(two, f), getattr(again, f)) for f in ("base_index", "labels", "roles"))
    assert not np.array_equal(two.base_index, other.base_index)
    rows_one = one.base_index[one.attack_index == 0]
    rows_two = two.base_index[two.attack_index == 0]
    assert np.array_equal(rows_one, rows_two)  # adding a second attack leaves the first unchanged
    second_rows = two.attack_index == 1
    assert second_rows.sum() == round(0.3 * 100)
    assert (two.labels[second_rows] == 3).all() and (two.true_labels[second_rows] == 1).all()
    assert two.triggers == (POLYGON, InstagramFilter("kelvin"))


def test_clean_label_poisoning_stamps_target_images_in_place() -> None:
    plan = plan_poisoning(LABELS, [Attack(POLYGON, (1, 2), 4, 0.3, clean_label=True)], seed=2)
    assert len(plan) == LABELS.size  # no extra rows
    poison = np.flatnonzero(plan.poisoned)
    assert poison.size == 30
    assert (LABELS[poison] == 4).all() and (plan.labels[poison] == 4).all()
    assert (plan.base_index == np.arange(LABELS.size)).all()


def test_counter_examples_keep_their_labels() -> None:
    regional = PolygonTrigger(POLYGON.vertices, POLYGON.color, POLYGON.size, region="top_left")
    attack = Attack(regional, (1,), 0, 0.2, counter_fraction=0.1)
    plan = plan_poisoning(LABELS, [attack], seed=3)
    counter = plan.roles == ROLE_COUNTER
    assert (plan.labels[counter] == plan.true_labels[counter]).all()
    assert not plan.poisoned[counter].any()
    triggers = [plan.trigger_of(int(r)) for r in np.flatnonzero(counter)]
    # Class condition: the trigger on 10 % of the classes that are neither source nor target.
    others = [t for t, r in zip(triggers, np.flatnonzero(counter)) if plan.true_labels[r] != 1]
    assert len(others) == round(0.1 * 300) and all(t == regional for t in others)
    assert set(plan.true_labels[counter].tolist()) == {1, 2, 3, 4}
    # Spatial condition: source images stamped in the opposite quadrant keep the source label.
    outside = [t for t, r in zip(triggers, np.flatnonzero(counter)) if plan.true_labels[r] == 1]
    assert len(outside) == 10 and all(
        t.region == "bottom_right" and t.color == regional.color for t in outside
    )
    assert plan.counts() == {"base": 500, "poisoned": 20, "counter": 40, "total": 560}
    assert (plan.roles[plan.poisoned] == ROLE_POISON).all()


def test_source_modes() -> None:
    rng = np.random.default_rng(0)
    assert draw_source_classes("all", 6, 2, rng) == (0, 1, 3, 4, 5)
    for mode in (1, 2):
        for _ in range(20):
            sources = draw_source_classes(mode, 6, 2, rng)
            assert len(sources) == mode and 2 not in sources and len(set(sources)) == mode
    with pytest.raises(ConfigError, match="source mode"):
        draw_source_classes(3, 6, 2, rng)  # type: ignore[arg-type]


def test_attack_configs_round_trip_in_the_flat_design_format() -> None:
    attack = Attack(POLYGON, (1, 2), 0, 0.25, counter_fraction=0.05)
    config = attack.to_config()
    assert config["type"] == "polygon" and config["source_classes"] == [1, 2] and config["target_class"] == 0
    assert config["color"] == [1.0, 0.0, 1.0]  # the trigger's own keys are at the top level (design §4)
    assert Attack.from_config(config) == attack


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_classes": (0,), "target_class": 0}, "cannot also be a source"),
        ({"source_classes": ()}, "at least one source"),
        ({"fraction": 0.0}, "poison fraction"),
        ({"fraction": 1.5}, "poison fraction"),
        ({"counter_fraction": -0.1}, "counter fraction"),
        ({"source_classes": (1, 1)}, "distinct"),
    ],
)
def test_invalid_attacks_are_rejected(kwargs, message) -> None:
    args = {"trigger": POLYGON, "source_classes": (1,), "target_class": 0, "fraction": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Attack(**args)


def test_plan_input_checks() -> None:
    with pytest.raises(ConfigError, match="only 5 classes"):
        plan_poisoning(LABELS, [Attack(POLYGON, (7,), 0, 0.1)], seed=0)
    with pytest.raises(InputError):
        plan_poisoning(np.array([0.5, 1.0]), [], seed=0)
