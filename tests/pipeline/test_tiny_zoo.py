"""EX-RAY on trained models: the tiny zoo (built once and cached by exray.zoo, shared with other suites)."""

import json
from pathlib import Path

import pytest

import exray
from exray.cli import main
from exray.differencing import MaskConfig, compare_triggers, symmetric_mask
from exray.evaluation.known import known_triggers
from exray.pipeline import Calibration, read_results, scan
from exray.pipeline.scan import judging_gate
from exray.refinement.base import ASR_TOLERANCE
from exray.scanners import get_scanner

zoo = pytest.importorskip("exray.zoo")


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.xdist_group("tiny_zoo")
def test_exray_prunes_the_natural_triggers_abs_finds_between_glyph_only_different_classes(tiny_zoo):
    """A clean model's confusion pair (same sign shape and colours, different glyph: data.signs) is the
    paper's natural backdoor: ABS flips one class into the other with a patch that draws the other glyph's
    features, and EX-RAY must judge every such trigger natural (EXP §2, Fig. 1)."""
    directory = tiny_zoo
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
@pytest.mark.trained
@pytest.mark.xdist_group("tiny_zoo")
def test_early_stopping_never_returns_a_uniform_plateau(tiny_zoo):
    """On trained models the size term first shrinks every channel alike and then sits on a plateau of
    equal values for many epochs; early stopping there returned masks that covered every channel at ~0.75
    (r2-like zoo, docs/results.md). With patience, a mask that stops early must be decided."""
    directory = tiny_zoo
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
@pytest.mark.trained
@pytest.mark.xdist_group("tiny_zoo")
def test_exray_judges_every_glyph_swap_of_the_tiny_zoo_natural(tiny_zoo):
    """A glyph swap (a confusion pair's victim scenes re-rendered with the other class's sign) is a natural
    trigger by construction: the stamped image *is* a target-class image, so the features that flip V to
    V+trigger are the V/T-distinguishing ones (paper §3). EX-RAY must say natural for every one, in every
    model, at the scan's layer. Measured over rebuilds: 32 of 32 glyph swaps natural over seeds 3–6
    (docs/results.md) — the direction of EX-RAY's premise that holds on narrow models too."""
    masks = MaskConfig(precision="bf16", patience=40)
    wrong = []
    for row in zoo.read_metadata(tiny_zoo):
        model = exray.load_model(tiny_zoo / row["name"])
        swaps = [k for k in known_triggers(tiny_zoo, row["name"]) if k.natural]
        assert len(swaps) == 2  # one glyph-only confusion pair per model, both directions
        verdicts = compare_triggers(model, [k.case for k in swaps], layer="block:1", config=masks, seed=0)
        wrong += [(row["name"], k.description, v.summary()) for k, v in zip(swaps, verdicts) if not v.natural]
    assert not wrong, wrong


@pytest.mark.slow
@pytest.mark.trained
# Its own xdist group, so that the longest test runs beside the other tiny-zoo tests.
@pytest.mark.xdist_group("tiny_zoo_scan")
def test_exray_scan_over_the_tiny_zoo_judges_every_strong_trigger_and_scores_what_is_left(tiny_zoo, tmp_path):
    """The README's `exray scan` (ABS + EX-RAY at the first block, with the report) over trained models,
    end to end. What must hold on any build: every model is recorded; every trigger ABS finds with ASR ≥
    the gate (by default the calibration's threshold) carries EX-RAY's verdict, is pruned exactly when
    judged natural, and weaker ones say why they were not judged; the model's score is the strongest
    trigger left and its probability the calibrated score; a page per model (one trojaned and one clean
    model are scanned).

    Whether a given trojan of this population is flagged is *not* asserted: on these narrow 32×32 models
    EX-RAY's premise holds for some builds and not others (docs/results.md, "Tests on rebuilt fixtures":
    planted triggers judged injected for about half the seeds), so it is a measured result, reported with
    its spread over rebuilds. Detection by construction — a planted trigger flagged, a natural one pruned,
    through the same command — is tested on hand-wired models (tests/pipeline/test_batch.py)."""
    metadata = zoo.read_metadata(tiny_zoo)
    # one trojaned and one clean model: the invariants do not need more, and each scan takes minutes
    rows = {
        row["name"]: row
        for row in (next(r for r in metadata if r["poisoned"] == p) for p in ("True", "False"))
    }
    out, report = tmp_path / "tiny.jsonl", tmp_path / "report"
    args = ["scan", *(str(tiny_zoo / name) for name in sorted(rows)), "--out", str(out)]
    args += ["--report", str(report), "--workers", "2", "--layer", "block:1"]
    assert main([*args, "--precision", "bf16", "--patience", "40", "--quiet"]) == 0
    records = read_results(out)
    assert sorted(Path(path).name for path in records) == sorted(rows)
    calibration = Calibration()
    gate = judging_gate(None, calibration)  # the default: the calibration's flagging threshold
    judged = 0
    for record in records.values():
        assert record["error"] is None, record["error"]
        assert (record["scanner"], record["refine"]) == ("abs", "exray")
        for trigger in record["triggers"]:
            verdict = trigger["verdict"]
            if trigger["asr"] >= gate - ASR_TOLERANCE:  # the pipeline's gate, float32 ASRs included
                assert verdict is not None, trigger["note"]
                assert trigger["pruned"] == verdict["natural"]
                assert (verdict["victim_label"], verdict["target_label"]) == (
                    trigger["victim"],
                    trigger["target"],
                )
                judged += 1
            else:
                assert verdict is None and not trigger["pruned"] and "not refined" in trigger["note"]
            assert trigger["score"] == (0.0 if trigger["pruned"] else trigger["asr"])
        scores = [t["score"] for t in record["triggers"]]
        assert record["score"] == max(scores, default=0.0)
        assert record["probability"] == pytest.approx(calibration.probability(record["score"]))
    assert judged > 0, "ABS found no trigger strong enough for EX-RAY in any model"
    index = (report / "index.html").read_text()
    assert all(name in index for name in rows)
    assert len(list(report.glob("*/index.html"))) == len(rows)
