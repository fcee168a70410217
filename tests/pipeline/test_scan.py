import pytest
import torch

from exray.errors import ConfigError, InputError, LayerError
from exray.pipeline import scan
from exray.scanners import FoundTrigger
from exray.triggers import PatchTrigger

from .conftest import colour_model, examples


@pytest.fixture(scope="module")
def clean_scans():
    model, data = colour_model(planted=False), examples()
    return scan(model, data, refine=None), scan(model, data, refine="exray")


def _stamped_colour(report, data):
    found = report.found
    victim = data[found.victim][:1]
    changed = (found.trigger.apply(victim) - victim).abs().sum(1)[0] > 0.1
    return found.trigger.apply(victim)[0, :, changed].mean(1)


def test_abs_alone_flags_the_clean_model_and_exray_prunes_every_natural_trigger(clean_scans):
    alone, refined = clean_scans
    assert alone.triggers and alone.probability > 0.8  # the scanner's false positive
    assert all(t.verdict is None for t in alone.triggers)
    assert refined.triggers and all(t.pruned for t in refined.triggers)
    assert refined.score == 0.0 and refined.probability < 0.1
    assert set(refined.timings) >= {"scanner", "exray"}


def test_the_planted_trigger_survives_and_flags_the_model():
    data = examples()
    result = scan(colour_model(planted=True), data, refine="exray")
    kept = result.flagged
    assert kept and result.probability > 0.8
    magenta = torch.tensor([1.0, 0.0, 1.0])
    assert all(torch.allclose(_stamped_colour(t, data), magenta, atol=0.1) for t in kept)
    assert all(t.found.target == 1 for t in kept)
    assert any(t.pruned for t in result.triggers)  # natural triggers of the same model are still pruned


def test_user_supplied_triggers_are_judged_without_a_scanner():
    model, data = colour_model(planted=True), examples()
    patches = {"magenta": (1.0, 0.0, 1.0), "green": (0.0, 1.0, 0.0)}
    supplied = [
        FoundTrigger.evaluate(model, PatchTrigger(colour, 0.15, (0.0, 0.0)), data, victim=0, kind="patch")
        for colour in patches.values()
    ]
    result = scan(model, data, triggers=supplied)
    assert result.scanner == "user"
    assert [t.pruned for t in result.triggers] == [False, True]


def test_result_serialises_with_the_stable_keys(clean_scans):
    record = clean_scans[1].to_dict()
    assert {"model", "probability", "triggers", "error", "timings", "seed", "versions"} <= set(record)
    assert record["error"] is None and record["triggers"][0]["verdict"]["natural"] is True


def test_bad_calls():
    model = colour_model(planted=False)
    with pytest.raises(InputError, match="at least two classes"):
        scan(model, {0: examples()[0]})
    with pytest.raises(ConfigError, match="refine"):
        scan(model, examples(), refine="magic")


def test_the_scanner_and_the_refinement_take_their_own_layers():
    model, data = colour_model(planted=True), examples()
    with pytest.raises(LayerError, match="nope"):
        scan(model, data, refine=None, scanner_layer="nope")
    alone = scan(model, data, refine=None, layer="nope")  # the refinement's layer: unused without one
    assert alone.triggers
    with pytest.raises(LayerError, match="nope"):
        scan(model, data, refine="exray", layer="nope")
