"""Hand-wired colour-detector models whose differential features are known by construction."""

import pytest

from exray.models.analytic import ColourDetectorNet, symbol_images

VICTIM, TARGET = 0, 1


@pytest.fixture(scope="session")
def planted():
    """Class 0 = red symbol, 1 = green symbol, 2 = blue, 3 = yellow; the magenta detector is a planted
    trojan wired to class 1. A green patch (class 1's own feature) is a natural trigger for 0 → 1."""
    net = ColourDetectorNet(
        [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}, {"yellow": 2}], bias=[0, 0.1, 0.05, 0.05]
    )
    return {
        "net": net,
        "victim": symbol_images("red", 10, seed=1),
        "target": symbol_images("green", 10, seed=2),
        "injected": symbol_images("red", 10, seed=1, patch="magenta"),
        "natural": symbol_images("red", 10, seed=1, patch="green"),
    }


@pytest.fixture(scope="session")
def suppression():
    """Class 0 = red symbol (its only feature), class 1 = green symbol with a strong prior: covering the
    red symbol flips 0 → 1 — a natural trigger that works by *suppressing* the victim's feature."""
    net = ColourDetectorNet([{"red": 2}, {"green": 3}, {"blue": 2}], bias=[0, 1.8, 0])
    return {
        "net": net,
        "victim": symbol_images("red", 10, seed=1),
        "target": symbol_images("green", 10, seed=2),
        "covered": symbol_images("red", 10, seed=1, cover=True),
    }
