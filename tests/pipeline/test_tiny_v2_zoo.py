"""`exray scan` on the tests' population-v2 zoo (issue 16 §6): models of the Table-1 design, where EX-RAY's
premise holds at its default layer, and trojans planted in every source class."""

import json
from pathlib import Path

import pytest

from exray.cli import main
from exray.pipeline import Calibration, read_results

zoo = pytest.importorskip("exray.zoo")


@pytest.mark.slow
@pytest.mark.trained
@pytest.mark.xdist_group("tiny_v2_zoo")
def test_exray_scan_flags_every_trojan_of_the_v2_zoo_through_its_planted_target(tiny_v2_zoo, tmp_path):
    """The demo's settings (ABS at 20 inversion epochs and 2 candidate neurons, EX-RAY at `block:-2` with the
    round-2 rule, default calibration) over both trojaned models: each is flagged, and by a trigger EX-RAY
    kept whose target is the planted one — not by an unrelated natural trigger.

    Why this holds by design, not by a seed: each trojan poisons all four source classes, so ABS finds
    several triggers to the planted target (3-5 per model in the pilot) and EX-RAY needs to judge only one
    of them injected; on this design it judges about 89 % of planted pairs injected (docs/results.md).
    Measured before the test was written (docs/results.md, "The tests' v2 zoo"): 6 of 6 trojans of the
    3-seed pilot flagged through their planted target; this spec's seeds 201-203 (EXRAY_TEST_SEED 0-2) as
    recorded there. Clean models are not asserted: that ABS + EX-RAY clears one is a measured rate."""
    metadata = zoo.read_metadata(tiny_v2_zoo)
    assert metadata and all(row["poisoned"] == "True" for row in metadata)
    out = tmp_path / "v2.jsonl"
    args = ["scan", *(str(tiny_v2_zoo / row["name"]) for row in metadata), "--out", str(out)]
    args += ["--workers", "2", "--layer", "block:-2", "--policy", "r2", "--precision", "fp32"]
    args += ["--patience", "20", "--scanner-option", "epochs=20", "--scanner-option", "top_n_neurons=2"]
    assert main([*args, "--quiet"]) == 0
    records = read_results(out)
    threshold = Calibration().threshold
    for path, record in records.items():
        assert record["error"] is None, record["error"]
        config = json.loads((Path(path) / "config.json").read_text())
        planted = {trigger["target_class"] for trigger in config["triggers"]}
        kept = [t for t in record["triggers"] if not t["pruned"] and t["score"] >= threshold]
        assert record["probability"] > 0.5, (Path(path).name, record["score"])
        assert any(t["target"] in planted for t in kept), (
            Path(path).name,
            planted,
            [(t["victim"], t["target"], t["asr"], t["pruned"]) for t in record["triggers"]],
        )
