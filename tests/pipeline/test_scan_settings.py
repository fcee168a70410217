"""One settings object for a scan (issue 21 §2): ScanSettings is what scan() takes — as an object or as its
keywords, with the same result — and what a batch's ScanOptions extends; every field is validated when the
settings are made, before any model."""

import dataclasses

import pytest

from exray.differencing import MaskConfig
from exray.errors import ConfigError
from exray.pipeline import Calibration, ScanOptions, ScanSettings, scan
from exray.scanners import get_scanner

from .conftest import colour_model, examples


def test_settings_as_an_object_or_as_keywords_scan_alike():
    model, data = colour_model(planted=True), examples()
    keywords = {"scanner_options": {"epochs": 3}, "mask_config": MaskConfig(epochs=10), "seed": 3}
    by_keywords = scan(model, data, **keywords)
    by_object = scan(model, data, ScanSettings(**keywords))
    assert by_object.to_dict()["triggers"] == by_keywords.to_dict()["triggers"]
    assert by_object.probability == by_keywords.probability


def test_every_setting_is_checked_when_the_settings_are_made():
    for bad, match in (
        ({"victims": "some"}, "victims"),
        ({"refine": "magic"}, "refine"),
        ({"refine_min_asr": 1.5}, "refine_min_asr"),
        ({"seed": -1}, "seed"),
        ({"layer": ""}, "layer"),
        ({"scanner_options": {"bogus": 1}}, "bogus"),
        ({"scanner": "nope"}, "nope"),
        ({"policy": "nope"}, "policy"),
        ({"calibration": {"threshold": 0.5}}, "calibration"),
        ({"scanner": get_scanner("abs"), "scanner_options": {"epochs": 2}}, "scanner object"),
    ):
        with pytest.raises(ConfigError, match=match):
            ScanSettings(**bad)


def test_scan_refuses_unknown_keywords_and_settings_given_twice():
    model, data = colour_model(planted=False), examples()
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['sides'\]"):
        scan(model, data, sides="both")
    with pytest.raises(ConfigError, match="not both"):
        scan(model, data, ScanSettings(), seed=1)


def test_a_batch_scans_options_are_scan_settings_by_name_with_its_own_extras():
    options = ScanOptions(scanner="nc", refine="exray_v2t", seed=5, calibration=Calibration(threshold=0.5))
    settings = options.scan_settings()
    assert type(settings) is ScanSettings
    assert {f.name for f in dataclasses.fields(ScanSettings)} < {
        f.name for f in dataclasses.fields(ScanOptions)
    }
    assert (settings.scanner, settings.refine, settings.seed, settings.calibration.threshold) == (
        "nc", "exray_v2t", 5, 0.5,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="by name"):
        ScanOptions(scanner=get_scanner("abs"))
    with pytest.raises(ConfigError, match="refine"):
        ScanOptions(refine=None) and ScanOptions(refine="inner_l2")


def test_none_still_means_the_default_calibration_and_no_scanner_options():
    settings = ScanSettings(calibration=None, scanner_options=None)
    assert settings.calibration == Calibration() and settings.scanner_options == {}


def test_an_evaluation_checks_its_scan_settings_as_scan_does_and_hands_a_row_s_settings_to_scan():
    from exray.evaluation import EvaluationConfig

    config = EvaluationConfig(methods=("exray", "inner_l2"), seed=4, layer="block:0", policy="r2")
    row = config.settings_for("exray")
    assert (row.scanner, row.seed, row.layer, row.refine.name) == ("abs", 4, "block:0", "exray")
    assert row.refine.options()["policy"] == "r2"  # the method object carries the evaluation's policy
    assert config.settings_for(None).refine is None
    for bad, match in (({"seed": -1}, "seed"), ({"scanner_options": {"bogus": 1}}, "bogus")):
        with pytest.raises(ConfigError, match=match):
            EvaluationConfig(methods=("exray",), **bad)
