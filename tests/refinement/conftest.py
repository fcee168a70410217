"""A hand-wired colour-detector model whose natural and injected triggers are known by construction.

Class c's symbol colour is SYMBOLS[c]. A small green patch (class 1's own feature, weight 2.5 against 2)
flips the red victim class 0 to class 1: a *natural* trigger. The magenta detector is a planted trojan
wired to class 1: a magenta patch is an *injected* trigger. Both are stamped on the same victim images.
"""

import pytest

from exray.models.analytic import COLOURS, ColourDetectorNet, symbol_images
from exray.refinement import select_cases
from exray.scanners import FoundTrigger
from exray.triggers import PatchTrigger

SYMBOLS = ("red", "green", "blue", "yellow")
PLANTED_VOTES = [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}, {"yellow": 2}]
BIAS = [0, 0.1, 0.05, 0.05]
VICTIM, TARGET = 0, 1


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run the marked tests on one xdist worker")


def patch_trigger(model, examples, colour: str) -> FoundTrigger:
    trigger = PatchTrigger(COLOURS[colour], 0.15, (0.0, 0.0))
    return FoundTrigger.evaluate(model, trigger, examples, victim=VICTIM, target=TARGET, kind="patch")


@pytest.fixture(scope="session")
def planted():
    net = ColourDetectorNet(PLANTED_VOTES, BIAS)
    examples = {c: symbol_images(colour, 10, size=16, seed=c) for c, colour in enumerate(SYMBOLS)}
    triggers = [patch_trigger(net, examples, "magenta"), patch_trigger(net, examples, "green")]
    selection = select_cases(examples, triggers, min_asr=0.9, stamp_targets=True)
    assert selection.indices == [0, 1], selection.notes  # both triggers flip every victim image
    injected, natural = selection.cases
    return {"net": net, "examples": examples, "triggers": triggers, "injected": injected, "natural": natural}
