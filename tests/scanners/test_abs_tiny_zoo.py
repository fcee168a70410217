"""ABS on a trained model: the tiny zoo's polygon-trojaned model (built once and cached by exray.zoo)."""

from pathlib import Path

import pytest

import exray
from exray.scanners import get_scanner

zoo = pytest.importorskip("exray.zoo")
SPEC = Path(__file__).resolve().parents[2] / "zoos" / "tiny.yaml"


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_zoo")
def test_abs_finds_the_planted_polygon_and_its_target():
    directory = zoo.cached_build(SPEC)
    rows = [
        r for r in zoo.read_metadata(directory) if r["poisoned"] == "True" and r["trigger_type"] == "polygon"
    ]
    assert rows, "the tiny zoo has a polygon-trojaned model"
    meta = rows[0]
    sources = {int(s) for s in meta["source_classes"].split()}
    target = int(meta["target_class"])
    model = exray.load_model(directory / meta["name"])
    examples = exray.load_examples(directory / meta["name"])
    result = get_scanner("abs", modes=("patch",)).scan(model, examples, seed=0)
    found = [(t.victim, t.target, round(t.asr, 2)) for t in result.triggers]
    from_sources = [t for t in result.triggers if t.victim in sources]
    assert from_sources, found
    # The planted polygon covers more than ABS's size bound (3.2 % of the image), so the inverted patch
    # carries only part of it; and the tiny zoo is retrained on each machine (CPU training is not
    # bit-identical across runs): its ASR was 0.98 on one build, 0.60 on another. What must hold is that
    # ABS's strongest trigger from a source class points at the planted target, far above chance.
    best = max(from_sources, key=lambda t: t.asr)
    assert best.target == target and best.asr >= 0.5, found
    assert all(t.size <= result.diagnostics["size_bound"] for t in result.triggers)
