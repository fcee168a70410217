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
    hits = [t for t in result.triggers if t.target == target and t.victim in sources and t.asr >= 0.9]
    assert hits, [(t.victim, t.target, t.asr) for t in result.triggers]
    assert all(t.size <= result.diagnostics["size_bound"] for t in hits)
