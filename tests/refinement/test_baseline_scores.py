"""Every refinement method scores the planted injected trigger above the natural one (spec §4.7)."""

import math

import pytest
import torch

from exray.differencing import MaskConfig
from exray.models.analytic import CHANNEL
from exray.refinement import (
    RF_FEATURES,
    RefinementCase,
    channel_iou,
    get_method,
    list_methods,
    trigger_region,
)

FAST = {"config": MaskConfig(epochs=100)}


def _method(name):
    return get_method(name, **FAST) if name.startswith("exray") else get_method(name)


@pytest.mark.parametrize("name", [n for n in list_methods() if n != "inner_rf"])
def test_injected_scores_above_natural(planted, name):
    method = _method(name)
    injected, natural = method.score(planted["net"], [planted["injected"], planted["natural"]])
    assert injected.value is not None and natural.value is not None
    assert injected.value > natural.value, (injected, natural)
    assert all(math.isfinite(s.value) for s in (injected, natural))


@pytest.mark.parametrize("name", ["exray", "exray_v2t", "exray_t2v"])
def test_exray_family_decides_by_its_own_verdict(planted, name):
    method = _method(name)
    judged = method.judge(planted["net"], [planted["injected"], planted["natural"]])
    assert [j.natural for j in judged] == [False, True]
    assert [j.score.value for j in judged] == [1.0, 0.0]
    assert all(j.threshold == 0.5 for j in judged)
    sides = {"exray": "both", "exray_v2t": "a_to_b", "exray_t2v": "b_to_a"}[name]
    assert all(j.score.verdict.sides == sides for j in judged)


@pytest.mark.parametrize("name", ["ig", "deeplift", "occlusion"])
def test_attributions_pick_the_trigger_and_target_channels(planted, name):
    injected, natural = _method(name).score(planted["net"], [planted["injected"], planted["natural"]])
    # one channel of eight per set: the stamped set's top channel is the trigger's colour detector
    assert injected.details["top_stamped"] == [CHANNEL["magenta"]]
    assert natural.details["top_stamped"] == natural.details["top_target"] == [CHANNEL["green"]]
    assert natural.details["used"] == "intersection" and natural.details["channels"] == [CHANNEL["green"]]
    assert injected.details["used"].startswith("union")  # magenta vs green: disjoint top sets


def test_attribution_methods_agree_on_a_piecewise_linear_suffix(planted):
    # the suffix (global max pool + linear) is piecewise linear with a zero baseline: IG and DeepLift
    # attributions coincide, so the scores do too
    cases = [planted["injected"], planted["natural"]]
    ig = [s.value for s in get_method("ig").score(planted["net"], cases)]
    deeplift = [s.value for s in get_method("deeplift").score(planted["net"], cases)]
    assert ig == pytest.approx(deeplift, rel=1e-5)


def test_network_dissection_finds_the_trigger_neuron_and_skips_filters(planted):
    case = planted["injected"]
    region = trigger_region(case.victim, case.stamped)
    assert region.flatten(1).sum(1).min() > 0
    method = get_method("ne")
    cut_features = planted["net"].detectors(case.stamped)
    iou = channel_iou(cut_features, region, 0.995)
    assert int(iou.argmax()) == CHANNEL["magenta"]
    assert iou[CHANNEL["blue"]] == 0  # a dead channel is active nowhere
    filtered = RefinementCase(case.victim, case.target, case.stamped, 0, 1, "filter")
    injected, as_filter = method.score(planted["net"], [case, filtered])
    assert injected.details["channels"] == [CHANNEL["magenta"]]
    assert as_filter.value is None and "does not apply to filter" in as_filter.note
    assert method.decide(as_filter, "filter").natural is None


def test_random_forest_features_and_fitted_order(planted):
    rf = get_method("inner_rf")
    cases = [planted["injected"], planted["natural"]]
    injected, natural = rf.features(planted["net"], cases)
    assert len(injected) == len(RF_FEATURES)
    named = dict(zip(RF_FEATURES, injected))
    # the stamped victims are classified as the target: their mean target logit beats the victim's
    assert named["logit_stamped_victim@T"] > named["logit_stamped_victim@V"]
    assert injected[0] > natural[0]  # L2(V+t, T) is the Inner-L2 score
    fitted = rf.fit([injected, natural] * 5, [True, False] * 5, seed=0)
    scores = fitted.score(planted["net"], cases)
    assert scores[0].value > 0.5 > scores[1].value
    assert [j.natural for j in fitted.judge(planted["net"], cases)] == [False, True]


def test_scores_do_not_depend_on_other_cases(planted):
    both = get_method("inner_l2").score(planted["net"], [planted["injected"], planted["natural"]])
    alone = get_method("inner_l2").score(planted["net"], [planted["natural"]])
    assert alone[0].value == pytest.approx(both[1].value)
    assert torch.equal(planted["injected"].victim, planted["natural"].victim)
