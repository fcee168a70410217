"""ABS on trained models: the tiny zoo's trojaned models (built once and cached; see tests/conftest.py).

What ABS finds on a trained model depends on the weights, and the weights on the build (CPU, thread
count, seed). This module asserts what holds on any build: the triggers ABS reports stay within its
bound and carry the attack success rate that stamping them on the examples gives; and, for the
Instagram-filter trojan — a whole-image colour transform, inside ABS's filter search space — that ABS
inverts a filter from a planted source class to the planted target. Whether ABS inverts the planted
*polygon* from its source is not asserted: the polygon is larger than ABS's patch bound (3.2 % of the
image), and over rebuilds ABS found it on some builds and not others (docs/results.md, "Tests on rebuilt
fixtures"); detection by construction is tested on hand-wired models (test_abs_scanner.py).
"""

import pytest

import exray
from exray.scanners import FoundTrigger, get_scanner
from exray.zoo import read_metadata

pytestmark = [pytest.mark.slow, pytest.mark.trained, pytest.mark.xdist_group("tiny_zoo")]


def _trojaned(tiny_zoo, trigger_type):
    (row,) = [
        r for r in read_metadata(tiny_zoo) if r["poisoned"] == "True" and r["trigger_type"] == trigger_type
    ]
    path = tiny_zoo / row["name"]
    sources = {int(s) for s in row["source_classes"].split()}
    return exray.load_model(path), exray.load_examples(path), sources, int(row["target_class"])


def test_abs_reports_triggers_within_its_bound_with_the_asr_they_have(tiny_zoo):
    model, examples, _, _ = _trojaned(tiny_zoo, "polygon")
    result = get_scanner("abs", modes=("patch",)).scan(model, examples, seed=0)
    assert result.triggers, "ABS reports its best candidates, whatever their strength"
    for found in result.triggers:
        assert found.size <= result.diagnostics["size_bound"] + 1e-6
        again = FoundTrigger.evaluate(
            model, found.trigger, examples, victim=found.victim, target=found.target
        )
        assert again.asr == pytest.approx(found.asr), (found.victim, found.target)


def test_abs_inverts_the_planted_instagram_filter_from_a_source_class_to_the_target(tiny_zoo):
    model, examples, sources, target = _trojaned(tiny_zoo, "instagram")
    result = get_scanner("abs", modes=("filter",)).scan(model, examples, seed=0)
    found = [(t.victim, t.target, round(t.asr, 2)) for t in result.triggers]
    planted = [t for t in result.triggers if t.victim in sources and t.target == target]
    assert planted and max(t.asr for t in planted) >= 0.9, (sorted(sources), target, found)
