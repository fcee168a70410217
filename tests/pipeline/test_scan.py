import pytest
import torch

from exray.errors import ConfigError, InputError, LayerError
from exray.pipeline import scan
from exray.refinement import RefinementMethod, TriggerScore
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


def test_by_default_every_trigger_that_can_flag_the_model_is_judged():
    """One ASR constant gates EX-RAY and the decision (the official submissions' asr_bound): a natural
    trigger with ASR between the calibration threshold (0.875) and 0.9 is judged and pruned by default;
    with an explicit gate of 0.9 it stays unjudged — and then flags the clean model."""
    import dataclasses

    from exray.pipeline import Calibration

    model, data = colour_model(planted=False), examples()
    green = FoundTrigger.evaluate(model, PatchTrigger((0.0, 1.0, 0.0), 0.15, (0.0, 0.0)), data, victim=0)
    weaker = dataclasses.replace(green, asr=0.88)  # strong enough to flag (≥ 0.875), below 0.9
    (judged,) = scan(model, data, triggers=[weaker]).triggers
    assert judged.verdict is not None and judged.pruned
    result = scan(model, data, triggers=[weaker], refine_min_asr=0.9)
    assert result.triggers[0].verdict is None and "not refined" in result.triggers[0].note
    assert result.probability > 0.5  # the unjudged trigger flags the clean model: why the default is the gate
    fitted = Calibration(threshold=0.8)
    lower = scan(model, data, triggers=[dataclasses.replace(green, asr=0.85)], calibration=fitted)
    assert lower.triggers[0].verdict is not None  # the gate follows a fitted calibration's threshold


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
    with pytest.raises(ConfigError, match="victims"):
        scan(model, examples(), victims="some")
    from exray.differencing import MaskConfig
    from exray.refinement import get_method

    method = get_method("exray")  # a method object carries its settings: others given beside are refused
    with pytest.raises(ConfigError, match="carries its own settings"):
        scan(model, examples(), refine=method, policy="r2")
    with pytest.raises(ConfigError, match="carries its own settings"):
        scan(model, examples(), refine=method, mask_config=MaskConfig(epochs=5))


def test_the_scanner_and_the_refinement_take_their_own_layers():
    model, data = colour_model(planted=True), examples()
    with pytest.raises(LayerError, match="nope"):
        scan(model, data, refine=None, scanner_layer="nope")
    alone = scan(model, data, refine=None, layer="nope")  # the refinement's layer: unused without one
    assert alone.triggers
    with pytest.raises(LayerError, match="nope"):
        scan(model, data, refine="exray", layer="nope")


def _supplied_patches(model, data):
    colours = [(1.0, 0.0, 1.0), (0.0, 1.0, 0.0)]  # magenta (planted), green (class 1's own feature)
    return [
        FoundTrigger.evaluate(model, PatchTrigger(colour, 0.15, (0.0, 0.0)), data, victim=0, kind="patch")
        for colour in colours
    ]


def test_flipped_victims_judge_a_trigger_from_every_class_it_flips():
    model, data = colour_model(planted=True), examples()
    result = scan(model, data, triggers=_supplied_patches(model, data), victims="flipped")
    magenta, green = result.triggers
    assert set(magenta.victim_votes) == set(green.victim_votes) == {0, 2, 3}  # every class but the target
    assert not any(magenta.victim_votes.values()) and not magenta.pruned
    assert all(green.victim_votes.values()) and green.pruned
    assert result.to_dict()["triggers"][0]["victim_votes"] == {"0": False, "2": False, "3": False}


class VictimOracle(RefinementMethod):
    """Test double: a trigger is "injected" exactly when judged from one of ``injected_from``."""

    name = "victim_oracle"
    title = "victim oracle"
    fixed_threshold = 0.5

    def __init__(self, injected_from):
        super().__init__()
        self.injected_from = set(injected_from)

    def _score(self, model, cases, *, layer, seed, progress):
        return [TriggerScore(float(case.victim_label in self.injected_from)) for case in cases]


@pytest.mark.parametrize(
    ("injected_from", "pruned_found", "pruned_flipped"),
    [({0}, False, True), ({2, 3}, True, False), ({0, 2}, False, False), (set(), True, True)],
)
def test_flipped_victims_keep_a_trigger_only_when_most_verdicts_say_injected(
    injected_from, pruned_found, pruned_flipped
):
    model, data = colour_model(planted=True), examples()
    magenta = _supplied_patches(model, data)[:1]  # found with victim 0; flips 0, 2 and 3
    oracle = VictimOracle(injected_from)
    found = scan(model, data, triggers=magenta, refine=oracle).triggers[0]
    flipped = scan(model, data, triggers=magenta, refine=oracle, victims="flipped").triggers[0]
    assert found.pruned is pruned_found and found.victim_votes is None
    assert flipped.pruned is pruned_flipped
    assert flipped.victim_votes == {v: v not in injected_from for v in (0, 2, 3)}


def test_layer_auto_and_the_entanglement_diagnostics_reach_the_scan_result():
    model, data = colour_model(planted=True), examples()
    result = scan(model, data, refine="exray", layer="auto")
    judged = [t.verdict for t in result.triggers if t.verdict is not None]
    assert judged and all(any("chosen by auto" in n for n in v.notes) for v in judged)
    assert result.flagged and result.probability > 0.8  # the planted magenta trigger is still kept
    refinement = result.diagnostics["refinement"]
    assert refinement["judged"] == len(judged) and refinement["layers"] == ["detectors.1"]
    assert refinement["entangled"] == sum(v.entangled for v in judged)
