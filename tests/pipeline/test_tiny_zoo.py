"""EX-RAY on trained models: the tiny zoo (built once and cached by exray.zoo, shared with other suites)."""

import json
from pathlib import Path

import pytest

import exray
from exray.cli import main
from exray.differencing import MaskConfig, symmetric_mask
from exray.pipeline import read_results, scan
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


@pytest.mark.slow
# Its own xdist group, so that the longest test runs beside the other tiny-zoo tests.
@pytest.mark.xdist_group("tiny_zoo_scan")
def test_exray_scan_flags_the_tiny_zoos_trojaned_models_and_clears_its_clean_ones(tmp_path):
    """Issue 4's done-when, through the CLI as the README runs it: ABS + EX-RAY at the first block (on
    these 32×32 models the second-to-last block judges even the planted triggers natural: docs/results.md).
    A trojaned model must be flagged for a trigger from a planted source class to the planted target."""
    directory = zoo.cached_build(SPEC)
    rows = {row["name"]: row for row in zoo.read_metadata(directory)}
    out, report = tmp_path / "tiny.jsonl", tmp_path / "report"
    args = ["scan", *(str(directory / name) for name in sorted(rows)), "--out", str(out)]
    args += ["--report", str(report), "--workers", "2", "--layer", "block:1"]
    assert main([*args, "--precision", "bf16", "--patience", "40", "--quiet"]) == 0
    for path, record in read_results(out).items():
        row = rows[Path(path).name]
        assert record["error"] is None, record["error"]
        # strong (ASR ≥ 0.9, so refined) and judged injected
        kept = [(t["victim"], t["target"]) for t in record["triggers"] if t["score"] >= 0.9]
        if row["poisoned"] == "True":
            sources = {int(s) for s in row["source_classes"].split()}
            planted = [(v, t) for v, t in kept if v in sources and t == int(row["target_class"])]
            assert record["probability"] > 0.5 and planted, (row["name"], record["probability"], kept)
        else:
            assert record["probability"] < 0.5, (row["name"], record["probability"], kept)
    index = (report / "index.html").read_text()
    assert all(name in index for name in rows)
    assert len(list(report.glob("*/index.html"))) == len(rows)
