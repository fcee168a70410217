"""One per-trigger interface for EX-RAY and the baselines (design §1), also inside exray.pipeline.scan."""

import pytest
import torch
from torch import nn

from exray.differencing import MaskConfig
from exray.errors import ConfigError, InputError
from exray.models import build_model
from exray.models.layers import LayerCut
from exray.pipeline import scan
from exray.refinement import METHODS, get_method, list_methods, suffix_module

PAPER_ORDER = [
    "inner_l2",
    "inner_rf",
    "ig",
    "deeplift",
    "occlusion",
    "ne",
    "exray_v2t",
    "exray_t2v",
    "exray",
]


def test_registry_lists_the_papers_rows_in_order():
    assert list_methods() == PAPER_ORDER
    titles = [METHODS[n].title for n in PAPER_ORDER]
    assert titles[0] == "Inner L2" and titles[-1] == "EX-RAY" and len(set(titles)) == len(titles)
    with pytest.raises(ConfigError, match="unknown refinement method"):
        get_method("magic")
    with pytest.raises(ConfigError, match="bad options"):
        get_method("inner_l2", steps=3)
    with pytest.raises(ConfigError, match="top_fraction"):
        get_method("ig", top_fraction=0.0)
    with pytest.raises(ConfigError, match="policy"):
        get_method("exray", policy="magic")


def test_score_baselines_need_thresholds_to_decide(planted):
    cases = [planted["injected"], planted["natural"]]
    method = get_method("inner_l2")
    with pytest.raises(ConfigError, match="no threshold for patch"):
        method.judge(planted["net"], cases)
    injected, natural = method.score(planted["net"], cases)
    middle = (injected.value + natural.value) / 2
    judged = method.with_thresholds({"patch": middle}).judge(planted["net"], cases)
    assert [j.natural for j in judged] == [False, True] and judged[0].threshold == middle
    assert method.thresholds == {}  # with_thresholds returns a copy
    with pytest.raises(ConfigError, match="own rule"):
        get_method("exray").with_thresholds({"patch": 0.5})
    with pytest.raises(ConfigError, match="unknown trigger kinds"):
        method.with_thresholds({"blend": 1.0})


def test_cases_are_checked(planted):
    case = planted["natural"]
    with pytest.raises(InputError, match="TriggerCase"):
        get_method("inner_l2").score(planted["net"], [object()])
    unlabelled = type(case)(case.victim, case.target, case.stamped, 0, None, "patch")
    with pytest.raises(InputError, match="target label"):
        get_method("inner_l2").score(planted["net"], [unlabelled])
    without_stamps = type(case)(case.victim, case.target, case.stamped, 0, 1, "patch")
    with pytest.raises(InputError, match="T\\+t"):
        get_method("inner_rf").features(planted["net"], [without_stamps])
    assert get_method("ig").score(planted["net"], []) == []


def test_deeplift_suffix_gives_every_call_its_own_activation():
    model = build_model("resnet18", 3, width=0.125).eval()
    cut = LayerCut(model, "layer3")
    module = suffix_module(cut)
    targets = [n.target for n in module.graph.nodes if n.op == "call_module"]
    assert len(targets) == len(set(targets))
    relus = [t for t in targets if isinstance(module.get_submodule(t), nn.ReLU)]
    assert len(relus) >= 4  # two per basic block of layer4
    features = cut.features(torch.rand(2, 3, 32, 32))
    assert torch.allclose(module(features), cut.suffix(features), atol=1e-6)
    assert not any(n.startswith("layer4_") for n, _ in model.named_modules())  # the model is untouched


def test_scan_refines_with_any_method(planted):
    net, examples, triggers = planted["net"], planted["examples"], planted["triggers"]
    by_name = scan(net, examples, triggers=triggers, refine="exray_t2v", mask_config=MaskConfig(epochs=100))
    assert by_name.refine == "exray_t2v" and [t.pruned for t in by_name.triggers] == [False, True]
    assert by_name.triggers[1].verdict.sides == "b_to_a" and "exray_t2v" in by_name.timings
    scores = get_method("occlusion").score(net, [planted["injected"], planted["natural"]])
    method = get_method("occlusion").with_thresholds({"patch": sum(s.value for s in scores) / 2})
    refined = scan(net, examples, triggers=triggers, refine=method)
    assert [t.pruned for t in refined.triggers] == [False, True]
    assert refined.triggers[0].verdict is None and refined.triggers[0].judgement.method == "occlusion"
    record = refined.to_dict()["triggers"][1]
    assert record["pruned"] and record["judgement"]["natural"] and record["judgement"]["threshold"] > 0
    assert refined.probability > 0.8  # the injected magenta trigger is kept
    with pytest.raises(ConfigError, match="thresholds"):
        scan(net, examples, triggers=triggers, refine="inner_l2")


def test_the_old_package_name_still_imports_with_a_deprecation_warning():
    """issue 21: exray.baselines became exray.refinement (EX-RAY's method: refinement.exray); the old names
    keep working for users' code, and say so."""
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "exray.baselines" or m.startswith("exray.baselines.")]:
        del sys.modules[name]
    with pytest.warns(DeprecationWarning, match="exray.refinement"):
        old = importlib.import_module("exray.baselines")
    import exray.refinement as new
    from exray.refinement import exray as method

    assert old.get_method is new.get_method
    assert importlib.import_module("exray.baselines.differencing") is method
