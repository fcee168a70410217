"""exray repair (issue 19 §3): unlearning an injected trigger on a model where the answer is known — the
hand-wired colour detector whose planted magenta detector votes for class 1 — lowers its ASR within the
clean-accuracy budget, refuses the natural trigger unless asked, and writes a loadable model directory."""

import json

import pytest
import torch
from tests.pipeline.conftest import write_model_dir

import exray
from exray.cli import main
from exray.errors import InputError
from exray.pipeline.scan import ScanResult, TriggerReport
from exray.repair import RepairConfig, repair_model
from exray.scanners import FoundTrigger
from exray.triggers import PatchTrigger

MAGENTA, GREEN = (1.0, 0.0, 1.0), (0.0, 1.0, 0.0)
#: The hand-wired weights are O(1) (a trained network's are O(0.01)): a learning rate to match.
ANALYTIC = RepairConfig(lr=0.05)


@pytest.fixture
def planted(tmp_path):
    return write_model_dir(tmp_path / "planted", planted=True)


def _found(model, examples, colour):
    return FoundTrigger.evaluate(model, PatchTrigger(colour, 0.15, (0.0, 0.0)), examples, victim=0, target=1)


def _results(path, model_dir, model, examples):
    """A results file as `exray scan` writes it: the magenta trigger kept, the green one pruned."""
    reports = [TriggerReport(_found(model, examples, MAGENTA)), TriggerReport(_found(model, examples, GREEN))]
    record = ScanResult(str(model_dir), 0.9, 1.0, reports, "abs", "exray", 0).to_dict()
    record["triggers"][1]["pruned"] = True  # what EX-RAY's natural verdict writes
    path.write_text(json.dumps(record) + "\n")
    return path


def test_unlearning_removes_the_injected_trigger_within_the_budget(planted):
    model, examples = exray.load_model(planted, device="cpu"), exray.load_examples(planted)
    magenta, green = _found(model, examples, MAGENTA), _found(model, examples, GREEN)
    assert magenta.asr == 1.0 and green.asr == 1.0  # both flip class 0 to 1 before the repair
    result = repair_model(model, examples, [magenta, green], natural=[False, True], config=ANALYTIC, seed=0)
    (unlearned,) = result.unlearned
    assert (unlearned["victim"], unlearned["target"], unlearned["natural"]) == (0, 1, False)
    assert unlearned["asr_before"] == 1.0 and unlearned["asr_after"] <= ANALYTIC.target_asr
    assert result.stopped == "unlearned" and result.accuracy_after >= result.accuracy_before - 0.02
    assert result.refused == [
        {"victim": 0, "target": 1, "kind": "patch", "reason": "judged natural by EX-RAY"}
    ]
    assert not any(p.requires_grad for p in model.parameters())  # the model's flags are restored
    # what the model learned is what was asked: magenta no longer votes for class 1, green still does
    assert _found(model, examples, MAGENTA).asr <= 0.1 and _found(model, examples, GREEN).asr == 1.0


def test_the_accuracy_budget_restores_the_last_good_weights(planted):
    """Unlearning the natural trigger (class 1's own green feature) must cost clean accuracy: with no
    budget for it, the repair keeps the weights of before the epoch that broke it."""
    model, examples = exray.load_model(planted, device="cpu"), exray.load_examples(planted)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    green = _found(model, examples, GREEN)
    config = RepairConfig(max_accuracy_drop=0.0, lr=0.5, epochs=5)
    result = repair_model(model, examples, [green], natural=[True], include_natural=True, config=config)
    assert result.stopped == "accuracy budget" and result.accuracy_after >= result.accuracy_before
    if result.epochs == 0:
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="every trigger was judged natural"):
        repair_model(model, examples, [green], natural=[True])


def test_the_repair_command_writes_a_model_directory(planted, tmp_path, capsys):
    model, examples = exray.load_model(planted, device="cpu"), exray.load_examples(planted)
    results = _results(tmp_path / "results.jsonl", planted, model, examples)
    out = tmp_path / "repaired"
    argv = ["repair", str(planted), "--triggers", str(results), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--lr", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "0→1 (patch): ASR 1.00 → 0.0" in printed and "judged natural by EX-RAY" in printed
    repaired, again = exray.load_model(out, device="cpu"), exray.load_examples(out)
    assert set(again) == set(examples)
    assert _found(repaired, again, MAGENTA).asr <= 0.1
    config = json.loads((out / "config.json").read_text())
    assert config["repair"]["unlearned"][0]["asr_before"] == 1.0 and "poisoned" not in config
    assert config["repaired_from"]["path"] == str(planted)
    # a second repair into the same directory is refused: nothing is overwritten
    assert main(["repair", str(planted), "--triggers", str(results), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_a_model_missing_from_the_results_is_a_clear_error(planted, tmp_path, capsys):
    (tmp_path / "r.jsonl").write_text("")
    assert (
        main(["repair", str(planted), "--triggers", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "holds no record" in capsys.readouterr().err
