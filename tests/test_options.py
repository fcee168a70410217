"""The settings toolkit (issue 21 §3, exray.options): one set of checks, each naming the option it rejects,
used by every validated settings object — scanners, detectors, attacks, EX-RAY's mask optimisation."""

import math

import numpy as np
import pytest

from exray.attacks.adaptive import AdaptiveConfig
from exray.attacks.hidden import HiddenTriggerConfig
from exray.attacks.input_aware import InputAwareConfig
from exray.detectors.activation_clustering import ActivationClustering
from exray.differencing import MaskConfig
from exray.errors import ConfigError
from exray.options import MAX_OPTION, check_choice, check_int, check_layer, check_real, make_options
from exray.scanners.abs import ABSConfig


def test_integer_checks_take_numpy_integers_and_refuse_bools_floats_and_out_of_range():
    check_int("n", 3)
    check_int("n", np.int64(3))
    check_int("seed", 2**62, 0)  # no upper bound unless one is given
    for bad in (True, 3.0, "3", 0, None):
        with pytest.raises(ConfigError, match="^n must be an integer"):
            check_int("n", bad)
    with pytest.raises(ConfigError, match=r"in \[1, 5\]"):
        check_int("n", 6, 1, 5)


def test_real_checks_respect_open_and_closed_ends_and_refuse_non_finite_values():
    check_real("x", 0.0, 0.0, 1.0)
    check_real("x", np.float32(0.5), 0.0, 1.0, low_open=True, high_open=True)
    for value, kwargs in ((0.0, {"low_open": True}), (1.0, {"high_open": True}), (1.5, {})):
        with pytest.raises(ConfigError, match="^x must be a finite number in"):
            check_real("x", value, 0.0, 1.0, **kwargs)
    for bad in (math.nan, math.inf, True, "1"):
        with pytest.raises(ConfigError, match="^x must be a finite number"):
            check_real("x", bad)


def test_choice_and_layer_checks():
    check_choice("mode", "a", ("a", "b"))
    with pytest.raises(ConfigError, match="mode must be one of"):
        check_choice("mode", "c", ("a", "b"))
    check_layer("layer", None)
    check_layer("layer", "block:-2")
    with pytest.raises(ConfigError, match="layer must be None or a module name"):
        check_layer("layer", "")


def test_make_options_reports_unknown_names():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['bogus'\]"):
        make_options(ABSConfig, {"bogus": 1})


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda: HiddenTriggerConfig(epsilon=0.0), "epsilon"),
        (lambda: HiddenTriggerConfig(steps=0), "steps"),
        (lambda: HiddenTriggerConfig(layer=""), "layer"),
        (lambda: InputAwareConfig(mask_density=1.0), "mask_density"),
        (lambda: InputAwareConfig(lr_mask=math.nan), "lr_mask"),
        (lambda: InputAwareConfig(mask_milestones=(0.5, 1.5)), "mask_milestones"),
        (lambda: InputAwareConfig(target_class=-1), "target_class"),
        (lambda: AdaptiveConfig(target_class=0, weight=math.inf), "adaptive weight"),
        (lambda: AdaptiveConfig(target_class=0, variant="l2"), "variant"),
        (lambda: MaskConfig(lr=math.inf), "lr"),
        (lambda: MaskConfig(patience=0), "patience"),
        (lambda: MaskConfig(epochs=MAX_OPTION), "epochs"),
        (lambda: ActivationClustering(n_init=0), "n_init"),
        (lambda: ABSConfig(epochs=0), "epochs"),
    ],
)
def test_every_settings_object_names_the_option_it_rejects(build, option):
    with pytest.raises(ConfigError, match=f"^{option}"):
        build()


def test_options_serialise_tuples_as_lists():
    record = InputAwareConfig().to_dict()
    assert record["classifier_milestones"] == [0.5, 0.75]
    assert HiddenTriggerConfig().to_dict()["epsilon"] == pytest.approx(16 / 255)
    assert MaskConfig().to_dict()["loss"] == "official"


def test_numpy_values_are_accepted_and_recorded_as_python_numbers_and_huge_ints_refused():
    import json

    config = ABSConfig(epochs=np.int64(20), mask_lr=np.float32(0.1))
    record = config.to_dict()
    assert type(record["epochs"]) is int and json.dumps(record)
    with pytest.raises(ConfigError, match="mask_lr"):
        ABSConfig(mask_lr=10**400)
