"""Inverted triggers and the result contract: JSON round trips that stamp identically, sizes, validation,
user-supplied triggers, and ConfigError for bad values."""

import json

import pytest
import torch

from exray.errors import ConfigError, InputError
from exray.scanners import FoundTrigger, ScannerResult
from exray.triggers import PatchTrigger, trigger_from_config
from exray.triggers.inverted import (
    FilterMapTrigger,
    MaskPatternTrigger,
    default_filter_window,
    filter_features,
)


def _images(n=3, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _round_trip(trigger):
    return trigger_from_config(json.loads(json.dumps(trigger.to_config())))


def test_mask_pattern_trigger_round_trips_and_stamps_identically():
    gen = torch.Generator().manual_seed(1)
    solid = MaskPatternTrigger(torch.rand(16, 16, generator=gen), torch.rand(3, 1, 1, generator=gen))
    full = MaskPatternTrigger(torch.rand(16, 16, generator=gen), torch.rand(3, 16, 16, generator=gen), None)
    x = _images()
    for trigger in (solid, full):
        again = _round_trip(trigger)
        assert again == trigger
        assert torch.equal(again.apply(x), trigger.apply(x))


def test_mask_pattern_stamping_and_size():
    mask = torch.zeros(8, 8)
    mask[0, :3] = torch.tensor([0.05, 0.5, 1.0])
    colour = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)
    x = torch.full((1, 3, 8, 8), 0.5)
    binarised = MaskPatternTrigger(mask, colour).apply(x)
    assert torch.equal(binarised[0, :, 0, 1], torch.tensor([1.0, 0.0, 1.0]))  # 0.5 > 0.1: pasted fully
    assert torch.equal(binarised[0, :, 0, 0], torch.full((3,), 0.5))  # 0.05: untouched
    soft = MaskPatternTrigger(mask, colour, threshold=None).apply(x)
    assert torch.allclose(soft[0, :, 0, 1], torch.tensor([0.75, 0.25, 0.75]))
    assert MaskPatternTrigger(mask, colour).size == 2
    assert MaskPatternTrigger(mask, colour).l1_norm == pytest.approx(1.55)
    with pytest.raises(InputError):
        MaskPatternTrigger(mask, colour).apply(torch.rand(1, 3, 9, 9))


def test_filter_map_round_trips_and_identity_weights_keep_the_image():
    weights = torch.zeros(12, 3)
    weights[[0, 1, 2], [0, 1, 2]] = 1.0
    x = _images(size=20)
    identity = FilterMapTrigger(weights, window=5)
    assert torch.allclose(identity.apply(x), x)
    trigger = FilterMapTrigger(torch.rand(12, 3, generator=torch.Generator().manual_seed(2)) / 4, 7, True)
    again = _round_trip(trigger)
    assert again == trigger and torch.equal(again.apply(x), trigger.apply(x))


def test_filter_features_true_min_and_official_quirk():
    x = torch.zeros(1, 3, 5, 5)
    x[0, :, 2, 2] = 1.0
    x[0, :, 0, 0] = 0.4
    feats = filter_features(x, 3)
    assert feats.shape == (1, 12, 5, 5)
    assert feats[0, 3, 1, 1] == 1.0 and feats[0, 3, 0, 0] == 0.4  # local max
    assert feats[0, 6, 2, 2] == 0.0  # true local min
    assert feats[0, 9, 0, 0] == pytest.approx(0.1)  # mean over the 4 in-image pixels of the corner window
    quirk = filter_features(x, 3, official_min=True)
    assert torch.equal(quirk[0, 6], -feats[0, 3])  # the official script's "min" is −max
    assert default_filter_window(224, 224) == 111 and default_filter_window(32, 32) == 15
    with pytest.raises(ConfigError):
        filter_features(x, 4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MaskPatternTrigger(torch.rand(4, 4), torch.rand(3, 2, 2)), "pattern"),
        (lambda: MaskPatternTrigger(torch.rand(4, 4) + 1.0, torch.rand(3, 1, 1)), "mask"),
        (lambda: MaskPatternTrigger(torch.rand(4, 4), torch.rand(3, 1, 1), threshold=1.5), "threshold"),
        (lambda: FilterMapTrigger(torch.rand(12, 3), window=4), "odd"),
        (lambda: FilterMapTrigger(torch.rand(3, 3), window=5), "12, 3"),
        (
            lambda: trigger_from_config({"type": "mask_pattern", "mask": {"shape": [2], "data": "@@"}}),
            "missing",
        ),
    ],
)
def test_bad_trigger_values_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_found_trigger_evaluates_a_user_trigger_and_round_trips(planted_patch):
    net, examples = planted_patch
    # a magenta patch in a corner: the planted backdoor of class 1
    user = PatchTrigger(color=(1.0, 0.0, 1.0), size=0.2, location=(0.0, 0.0))
    found = FoundTrigger.evaluate(net, user, examples, victim=0)
    assert (found.target, found.kind, found.asr) == (1, "patch", 1.0)
    assert found.universal_asr == 1.0 and found.size == pytest.approx(9.0)  # round(0.2·16)² pixels
    data = json.loads(json.dumps(found.to_dict()))
    again = FoundTrigger.from_dict(data)
    assert again.to_dict() == found.to_dict()
    assert torch.equal(again.stamp(examples[0]), found.stamp(examples[0]))
    natural = FoundTrigger.evaluate(net, user, examples, victim=0, target=2)
    assert natural.asr == 0.0
    with pytest.raises(InputError):
        FoundTrigger.evaluate(net, user, examples, victim=7)
    with pytest.raises(ConfigError):
        FoundTrigger(user, victim=0, target=1, kind="blob", asr=1.0)
    with pytest.raises(ConfigError):
        FoundTrigger(user, victim=0, target=1, kind="patch", asr=1.5)


def test_scanner_result_round_trips():
    trigger = MaskPatternTrigger(torch.rand(8, 8), torch.rand(3, 1, 1))
    found = FoundTrigger(trigger, 0, 1, "patch", 1.0, 3.0, 0.5, {"neuron": 4})
    result = ScannerResult(
        "abs", [found], {"profiling": 0.1}, {"label_prior": {"0": [1]}}, "layer3", 7, {"epochs": 20}
    )
    again = ScannerResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.to_dict() == result.to_dict()
    with pytest.raises(ConfigError):
        ScannerResult.from_dict({"scanner": "abs"})
