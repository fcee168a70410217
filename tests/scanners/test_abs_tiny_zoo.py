"""ABS on trained models: the tiny zoo's trojaned models (built once and cached; see tests/conftest.py).

What ABS finds on a trained model depends on the weights, and the weights on the build (CPU, thread
count, seed). This module asserts what holds on any build: the triggers ABS reports stay within its
bound and carry the attack success rate that stamping them on the examples gives. Whether ABS inverts a
planted trigger from its source class to its target is not asserted: over rebuilds it did on some builds
and not others — the polygon is larger than ABS's patch bound (3.2 % of the image), and even the
Instagram filter, inside ABS's filter search space, was inverted from its source with ASR 0.6 on one of
five builds (docs/results.md, "Tests on rebuilt fixtures"); detection by construction is tested on
hand-wired models (test_abs_scanner.py).
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
