"""EX-RAY on trained models: the tiny zoo (built once and cached by exray.zoo, shared with other suites)."""

import json
from pathlib import Path

import pytest

import exray
from exray.differencing import MaskConfig, symmetric_mask
from exray.pipeline import scan
from exray.scanners import get_scanner

zoo = pytest.importorskip("exray.zoo")
SPEC = Path(__file__).resolve().parents[2] / "zoos" / "tiny.yaml"


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_zoo")
def test_exray_prunes_the_natural_triggers_abs_finds_between_glyph_only_different_classes():
    """A clean model's confusion pair (same sign shape and colours, different glyph: data.signs) is the
    paper's natural backdoor: ABS flips one class into the other with a patch that draws the other glyph's
    features, and EX-RAY must judge every such trigger natural (EXP §2, Fig. 1)."""
    directory = zoo.cached_build(SPEC)
    judged = []
    for row in zoo.read_metadata(directory):
        if row["poisoned"] == "True":
            continue
        path = directory / row["name"]
        model, examples = exray.load_model(path), exray.load_examples(path)
        for a, b in json.loads((path / "config.json").read_text())["confusion_pairs"]:
            # A glyph does not fit ABS's default bound at 32×32 (3.2 % of the image): allow 10 %.
            abs_scanner = get_scanner("abs", modes=("patch",), max_size_fraction=0.1)
            found = abs_scanner.scan(model, {a: examples[a], b: examples[b]}, seed=0)
            pair = [t for t in found.triggers if {t.victim, t.target} == {a, b} and t.asr >= 0.9]
            masks = MaskConfig(precision="bf16", patience=40)
            judged += scan(model, examples, triggers=pair, mask_config=masks).triggers
    assert judged, "ABS finds no strong trigger between the glyph-only-different classes"
    assert all(t.verdict is not None and t.pruned for t in judged), [
        (t.found.victim, t.found.target, t.verdict and t.verdict.summary()) for t in judged
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_zoo")
def test_early_stopping_never_returns_a_uniform_plateau():
    """On trained models the size term first shrinks every channel alike and then sits on a plateau of
    equal values for many epochs; early stopping there returned masks that covered every channel at ~0.75
    (r2-like zoo, docs/results.md). With patience, a mask that stops early must be decided."""
    directory = zoo.cached_build(SPEC)
    for row in zoo.read_metadata(directory):
        path = directory / row["name"]
        model, examples = exray.load_model(path), exray.load_examples(path)
        (a, b), *_ = json.loads((path / "config.json").read_text())["confusion_pairs"]
        config = MaskConfig(precision="bf16", patience=20)
        result = symmetric_mask(
            model, a=examples[a], b=examples[b], label_a=a, label_b=b, layer="block:middle", config=config
        )
        near = ((result.values < 0.1) | (result.values > 0.9)).float().mean().item()
        assert result.epochs_run == config.epochs or near >= 0.95, (row["name"], result.epochs_run, near)
