"""ABS on hand-wired models with known backdoors (spec §2): stimulation picks the planted neuron, patch
inversion recovers the planted colour and target, a colour-filter backdoor is recovered as a filter, and
options and inputs are validated."""

import json

import pytest
import torch

from exray.errors import ConfigError, InputError, LayerError
from exray.models.analytic import CHANNEL
from exray.models.layers import LayerCut
from exray.scanners import ABSConfig, get_scanner
from exray.scanners.common import check_examples
from exray.scanners.stimulation import profile, select_candidates, stimulate


def test_stimulation_ranks_the_planted_neuron_first(planted_patch):
    net, examples = planted_patch
    data = check_examples(net, examples)
    prof = profile(net, data, "detectors.1")
    assert prof.max_activation[0] == pytest.approx(1.0, abs=0.1)
    images = torch.cat([examples[c][:2] for c in range(4)])
    labels = torch.arange(4).repeat_interleave(2)
    stimulated = stimulate(
        LayerCut(net, "detectors.1"), images, labels, prof.max_activation, channels_per_pass=3
    )
    assert stimulated.shape == (8, 8, 3, 4)
    candidates = select_candidates(stimulated, labels, prof.label_prior)
    for victim in (0, 2, 3):
        first = candidates[victim][0]
        # magenta votes 3 for class 1: the largest elevation margin of all neurons
        assert (first.neuron, first.target) == (CHANNEL["magenta"], 1)
        assert len(candidates[victim]) <= 3 and all(c.target != victim for c in candidates[victim])
        assert len({c.target for c in candidates[victim]}) == len(candidates[victim])  # one neuron per target


def test_abs_recovers_the_planted_patch_and_its_target(planted_patch):
    net, examples = planted_patch
    result = get_scanner("abs", modes=("patch",), epochs=12).scan(net, examples, seed=0)
    assert result.layer == "detectors.1"
    assert set(result.timings) == {"profiling", "stimulation", "probe", "inversion", "validation"}
    planted = [t for t in result.triggers if t.target == 1 and t.asr >= 0.99]
    assert planted, result.diagnostics["candidates"]
    for found in planted:
        colour = found.trigger.pattern.flatten()
        assert colour[0] > 0.7 and colour[1] < 0.3 and colour[2] > 0.7  # magenta
        assert found.kind == "patch" and 1 <= found.size <= result.diagnostics["size_bound"]
        assert found.details["neuron"] == CHANNEL["magenta"]
    json.dumps(result.to_dict())


def test_a_colour_filter_backdoor_is_recovered_as_a_filter(warm_model):
    net, examples = warm_model
    result = get_scanner("abs", epochs=12, top_n_neurons=2).scan(net, examples, seed=1)
    warmth = 8  # the tint channel
    tasks = [c for c in result.diagnostics["candidates"] if c["neuron"] == warmth]
    assert tasks and all(c["target"] == 3 and c["mode"] == "filter" for c in tasks)
    for c in tasks:
        assert c["probe_target_logit"]["filter"] > c["probe_target_logit"]["patch"]
    filters = [t for t in result.triggers if t.kind == "filter"]
    assert filters and all(t.target == 3 for t in filters)
    best = max(filters, key=lambda t: t.asr)
    assert best.asr >= 0.99 and 0.0 <= best.size < 0.5  # 1 − MS-SSIM: a visible but bounded change
    stamped = best.stamp(examples[0])
    assert (stamped[:, 0] - stamped[:, 2]).mean() > (
        examples[0][:, 0] - examples[0][:, 2]
    ).mean() + 0.1  # warmer


def test_a_class_with_one_example_still_scans(planted_patch):
    net, examples = planted_patch
    few = {c: x[:1] for c, x in examples.items()}
    result = get_scanner("abs", modes=("patch",), epochs=3).scan(net, few, seed=0)
    assert all(len(x) == 1 for x in few.values()) and result.diagnostics["candidates"]


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 0},
        {"modes": ("patch", "blob")},
        {"modes": ()},
        {"max_size_fraction": 1.5},
        {"filter_window": 4},
        {"jitter": -0.1},
        {"stim_levels": 1},
        {"tasks_per_run": 2.5},
        {"no_such_option": 1},
    ],
)
def test_invalid_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        get_scanner("abs", **options)


def test_defaults_scale_with_the_image():
    config = ABSConfig()
    assert config.size_bound(224, 224) == 1600
    assert config.size_bound(32, 32) == 33
    assert ABSConfig(max_size=50).size_bound(32, 32) == 50
    assert config.window(32, 32) == 15
    with pytest.raises(ConfigError):
        get_scanner("blob")


def test_bad_inputs_raise_clear_errors(planted_patch):
    net, examples = planted_patch
    scanner = get_scanner("abs", modes=("patch",), epochs=2)
    with pytest.raises(InputError, match="empty"):
        scanner.scan(net, {**examples, 1: examples[1][:0]})
    nan = examples[0].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        scanner.scan(net, {**examples, 0: nan})
    with pytest.raises(InputError, match="not classes"):
        scanner.scan(net, {**examples, 9: examples[0]})
    with pytest.raises(InputError, match="16×16"):
        get_scanner("abs").scan(net, {c: x[:, :, :12, :12] for c, x in examples.items()})
    with pytest.raises(LayerError):
        scanner.scan(net, examples, layer="nope")
