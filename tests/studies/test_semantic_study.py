"""The semantic-backdoor study (issue 19 §2, EX-RAY Tables 4-6): a zoo whose trigger types are the attacks,
ABS alone vs ABS + EX-RAY per attack group, the table and the CLI — on a seconds-fast design."""

import csv
import json
from pathlib import Path

import pytest
from tests.studies.study_specs import FAST_SCAN, study_zoo
from tests.zoo.conftest import micro_spec

from exray.cli import main
from exray.errors import ConfigError
from exray.models import runtime
from exray.studies.semantic import load_spec, parse_spec, procedures, run_semantic_study, trained
from exray.zoo.draw import draw_model


def _spec(**overrides):
    zoo = study_zoo(2, 2, types=["reflection", "warp"], source_modes=["all"], fraction=[0.5, 0.5])
    return {"name": "semantic-micro", "zoo": zoo, "scan": FAST_SCAN} | overrides


def test_the_study_evaluates_each_attack_group(tmp_path, monkeypatch):
    from exray.studies.semantic import runner

    asked, real = [], runner.evaluate_zoo

    def evaluate(*args, workers, threads, **kwargs):  # the study's models evaluated in this process
        asked.append((workers, threads))
        return real(*args, workers=1, threads=threads, **kwargs)

    monkeypatch.setattr(runner, "evaluate_zoo", evaluate)
    results = run_semantic_study(
        parse_spec(_spec()), tmp_path / "out", cache_root=tmp_path / "cache", workers=2
    )
    assert asked == [(2, runner.EVALUATION_THREADS)]  # the study's workers, one thread per model
    scores = next((tmp_path / "out" / "evaluation" / "cache" / "exray").glob("*.json"))
    assert json.loads(scores.read_text())["threads"] == runner.EVALUATION_THREADS
    groups = {(r["attack"], r["method"]) for r in results["rows"]}
    assert {("reflection", "ABS"), ("reflection", "EX-RAY"), ("warp", "ABS"), ("warp", "EX-RAY")} <= groups
    for row in results["rows"]:
        if row["attack"] in ("reflection", "warp"):
            assert (row["trojaned"], row["clean"]) == (1, 2)
            assert row["paper"]
    table = list(csv.DictReader((tmp_path / "out" / "study-semantic.csv").open()))
    assert len(table) == len(results["rows"])
    assert "| reflection |" in (tmp_path / "out" / "study-semantic.md").read_text()
    assert (tmp_path / "out" / "evaluation" / "evaluation.json").is_file()
    record = json.loads((tmp_path / "out" / "study-semantic.json").read_text())
    stages = record["seconds"]  # each stage's wall time, for the study's budget
    assert set(stages) == {"zoo", "trained_attacks", "evaluation", "total"}
    assert stages["total"] >= stages["zoo"] + stages["trained_attacks"] + stages["evaluation"] > 0
    assert results["stage_seconds"] == stages and record["versions"]["torch"]
    assert record["mask_precision"] == "fp32" and record["evaluation_threads"] == runner.EVALUATION_THREADS
    assert "Wall time of this run" in (tmp_path / "out" / "study-semantic.md").read_text()


@pytest.mark.parametrize("native", [True, False])
def test_scan_precision_auto_runs_as_the_machine_computes_it_and_keys_caches_by_what_ran(native, monkeypatch):
    from exray.differencing import config as mask_settings

    monkeypatch.setattr(mask_settings, "native_bf16", lambda device: native)
    spec = parse_spec(_spec(scan={**FAST_SCAN, "precision": "auto"}))
    ran = "bf16" if native else "fp32"
    assert spec.scan.to_dict()["precision"] == "auto"  # the spec as written
    assert spec.scan.settings()["precision"] == ran  # what the scan caches are keyed by
    assert spec.evaluation().mask_config.precision == ran
    with pytest.raises(ConfigError, match="precision"):
        parse_spec(_spec(scan={**FAST_SCAN, "precision": "bf8"}))


def test_specs_are_checked_and_the_shipped_one_is_valid():
    with pytest.raises(ConfigError, match="needs clean models"):
        parse_spec(_spec(zoo=micro_spec(models={"clean": 0, "trojaned": 1})))
    with pytest.raises(ConfigError, match="trained 'attacks'"):
        parse_spec(_spec(zoo=micro_spec(models={"clean": 1, "trojaned": 0})))
    with pytest.raises(ConfigError, match="'attacks.hidden'.*epsilon"):
        parse_spec(_spec(attacks={"hidden": {"models": 1, "epsilon": 2.0}}))
    with pytest.raises(ConfigError, match="attacks.composite.scanner_options"):
        parse_spec(_spec(attacks={"composite": {"models": 1, "scanner_options": {"bogus": 1}}}))
    with pytest.raises(ConfigError, match="bogus"):
        parse_spec(_spec(attacks={"input_aware": {"models": 1, "bogus": 1}}))
    with pytest.raises(ConfigError, match="drawn per model"):
        parse_spec(_spec(attacks={"input_aware": {"models": 1, "target_class": 1}}))
    with pytest.raises(ConfigError, match="scanner_options"):
        parse_spec(_spec(scan={"scanner_options": {"bogus": 1}}))
    spec = load_spec(Path(__file__).resolve().parents[2] / "studies" / "semantic.yaml")
    assert spec.zoo.triggers.types == ("reflection",)  # WaNet is trained by its own recipe, not the zoo's
    assert spec.zoo.training.bf16 == "auto" and spec.scan.precision == "auto"
    assert sorted(trained.TRAINING_ORDER) == sorted(trained.TRAINED_ATTACKS)  # every attack gets trained
    assert spec.evaluation().scanner_options["max_size_fraction"] == 0.25
    assert [a.attack for a in spec.attacks] == ["composite", "hidden", "input_aware", "wanet"]
    wanet = spec.attacks[3]
    assert wanet.settings["cross_ratio"] > 0  # the noise mode, with the pilot's recipe
    assert wanet.min_attack_success_rate == spec.zoo.quality.min_attack_success_rate
    composite = spec.attacks[0]
    assert (
        spec.evaluation(("composite",), **composite.scanner_options).scanner_options["max_size_fraction"]
        > 0.5
    )


def test_the_cli_runs_the_study(tmp_path, monkeypatch):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps(_spec()))
    monkeypatch.setenv("EXRAY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["study", "semantic", str(spec), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert (out / "study-semantic.csv").is_file()


#: The procedure-trained attacks at the micro scale (3 classes of 16×16, 20 training images per class).
MICRO_ATTACKS = {
    "composite": {
        "models": 1, "fraction": 0.5, "min_attack_success_rate": 0.0,
        "scanner_options": {"max_size_fraction": 0.5},
    },
    "hidden": {"models": 1, "steps": 5, "head_epochs": 1, "min_attack_success_rate": 0.0},
    "input_aware": {
        "models": 1, "epochs": 1, "mask_epochs": 1, "batch_size": 16, "generator_channels": 4,
        "min_attack_success_rate": 0.0,
    },
    "wanet": {"models": 1, "epochs": 1, "strength": 2.0, "min_attack_success_rate": 0.0},
}  # fmt: skip


def test_procedure_trained_attacks_join_the_population_with_their_ground_truth(tmp_path):
    """Composite, hidden-trigger, input-aware and WaNet models (not zoo trigger types) are trained, written as
    model directories with their ground truth, evaluated against the zoo's clean models — the composite group
    with its own ABS bound, in its own evaluation — and reused on a rerun."""
    spec = parse_spec(_spec(attacks=MICRO_ATTACKS))
    out = tmp_path / "out"
    results = run_semantic_study(spec, out, cache_root=tmp_path / "cache")
    for attack, sources in (("composite", 2), ("hidden", 1), ("input_aware", None), ("wanet", None)):
        config = json.loads((out / "trained" / f"{attack}-000" / "config.json").read_text())
        (trigger,) = config["triggers"]
        assert config["poisoned"] and trigger["type"] == attack
        assert (
            trigger["source_classes"] == "all"
            if sources is None
            else len(trigger["source_classes"]) == sources
        )
        assert trigger["target_class"] not in (trigger["source_classes"] if sources else [])
        assert (out / "population" / f"{attack}-000" / "model.safetensors").is_file()
        assert len(list((out / "trained" / f"{attack}-000" / "clean-example-data").glob("*.png"))) == 3 * 4
    rows = {(r["attack"], r["method"]): r for r in results["rows"]}
    for attack in ("composite", "hidden", "input_aware", "wanet", "reflection", "warp"):
        assert rows[(attack, "ABS")]["clean"] == 2 and rows[(attack, "ABS")]["trojaned"] == 1
    assert rows[("composite", "ABS")]["abs_max_size_fraction"] == 0.5
    assert rows[("hidden", "ABS")]["abs_max_size_fraction"] is None  # ABS's default
    assert (out / "evaluation-composite" / "evaluation.json").is_file()
    composite_eval = json.loads((out / "evaluation-composite" / "evaluation.json").read_text())
    assert "composite" in json.dumps(composite_eval["config"])  # the composite evaluation has only that group
    assert {t["attack"] for t in results["trojans"]} >= {"composite", "hidden", "input_aware", "wanet"}
    wanet = json.loads((out / "trained" / "wanet-000" / "config.json").read_text())
    assert wanet["triggers"][0]["stamp"]["strength"] == 2.0 and wanet["study_attack"]["epochs"] == 1
    stamp = (out / "trained" / "hidden-000" / "model.safetensors").stat().st_mtime_ns
    run_semantic_study(spec, out, cache_root=tmp_path / "cache")
    assert (out / "trained" / "hidden-000" / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_trained_model_below_its_quality_bar_is_redrawn_then_kept_out_of_the_population(
    tmp_path, monkeypatch
):
    """A model whose ASR stays below the attack's bar is redrawn (the zoo's attempts), written with
    quality.passed false, and left out of the evaluated population."""
    train = trained.PROCEDURES["composite"]

    def unlearned(task):  # the procedure as it is, with its attack not learned
        result = train(task)
        result.attack_success_rate = 0.0
        return result

    monkeypatch.setitem(trained.PROCEDURES, "composite", unlearned)
    attacks = {"composite": MICRO_ATTACKS["composite"] | {"min_attack_success_rate": 0.5}}
    zoo = study_zoo(2, 1, types=["warp"], source_modes=["all"]) | {
        "quality": {"min_clean_accuracy": 0.0, "min_attack_success_rate": 0.0, "attempts": 2}
    }
    out = tmp_path / "out"
    results = run_semantic_study(
        parse_spec(_spec(attacks=attacks, zoo=zoo)), out, cache_root=tmp_path / "cache"
    )
    config = json.loads((out / "trained" / "composite-000" / "config.json").read_text())
    assert not config["quality"]["passed"] and len(config["quality"]["attempts"]) == 2
    assert not (out / "population" / "composite-000").exists()
    assert "composite" not in {r["attack"] for r in results["rows"]}


def test_the_hidden_trigger_victim_changes_only_its_last_layer():
    """The paper's transfer-learning victim: the head learns, every other weight and BatchNorm's running
    statistics stay the extractor's, although the training loop runs in train mode."""
    import torch

    from exray.models import build_model
    from exray.models.hooks import last_to_run
    from exray.train import TrainConfig, TrainSet
    from exray.zoo.draw import draw_model

    spec = parse_spec(_spec(attacks=MICRO_ATTACKS))
    draw = draw_model(spec.zoo, trained.design(spec.zoo, spec.attacks[1], 0))
    extractor = build_model("cnn", 3, width=0.25)
    extractor(torch.rand(4, 3, 16, 16))
    data = TrainSet(torch.rand(32, 3, 16, 16), torch.arange(32) % 3)
    victim = procedures._fine_tune_head(extractor, data, TrainConfig(epochs=2, batch_size=8, lr=0.05), draw)
    before, after = extractor.state_dict(), victim.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k]) and "num_batches_tracked" not in k}
    head = last_to_run(victim, data.images[:1], torch.nn.Linear)
    assert changed == {f"{head}.weight", f"{head}.bias"}, changed  # BatchNorm's running statistics kept
    assert all(p.requires_grad for p in victim.parameters())


@pytest.mark.parametrize("bf16", ["auto", False])
def test_the_hidden_triggers_poisons_are_made_in_the_zoos_training_precision(bf16, monkeypatch):
    class Stop(Exception):
        pass

    made = []

    def poisons(*args, **kwargs):  # stands in for hidden_trigger_set: what the procedure asked for
        made.append(args[7])
        raise Stop

    zoo = study_zoo(2, 2, types=["reflection"], source_modes=["all"], fraction=[0.5, 0.5])
    zoo["training"] = {**zoo.get("training", {}), "bf16": bf16}
    spec = parse_spec(_spec(zoo=zoo, attacks=MICRO_ATTACKS))
    hidden = spec.attacks[1]
    draw = draw_model(spec.zoo, trained.design(spec.zoo, hidden, 0), 0)
    monkeypatch.setattr(procedures, "train_model", lambda *args, **kwargs: None)  # the extractor: not needed
    monkeypatch.setattr(procedures, "hidden_trigger_set", poisons)
    with pytest.raises(Stop):
        procedures.PROCEDURES["hidden"](procedures.task(spec.zoo, hidden.settings, draw))
    assert made[0].bf16 == bf16


@pytest.mark.parametrize("ran", [True, False])
def test_a_trained_model_is_reused_only_if_auto_ran_in_the_precision_it_runs_here(ran, tmp_path, monkeypatch):
    class Trains(Exception):
        pass

    def procedure(task):
        raise Trains

    spec = parse_spec(_spec(attacks=MICRO_ATTACKS))
    composite = spec.attacks[0]
    finished = tmp_path / composite.name(0)
    finished.mkdir()
    recipe = {"recipe_hash": trained.recipe_hash(spec.zoo, composite, 0)}
    config = {"study_attack": recipe, "training": {"bf16": "auto", "bf16_resolved": ran}}
    (finished / "config.json").write_text(json.dumps(config))
    monkeypatch.setitem(trained.PROCEDURES, "composite", procedure)
    monkeypatch.setattr(runtime, "native_bf16", lambda device: ran)  # the machine it was trained on
    assert trained.build_trained_model(spec.zoo, composite, 0, tmp_path) == config
    monkeypatch.setattr(runtime, "native_bf16", lambda device: not ran)  # another kind of machine
    with pytest.raises(Trains):
        trained.build_trained_model(spec.zoo, composite, 0, tmp_path)


def test_a_procedure_revision_retrains_only_its_attacks_models(monkeypatch):
    spec = parse_spec(_spec(attacks=MICRO_ATTACKS))
    now = {a.attack: trained.recipe_hash(spec.zoo, a, 0) for a in spec.attacks}
    monkeypatch.setattr(trained, "PROCEDURE_REVISIONS", {})
    before = {a.attack: trained.recipe_hash(spec.zoo, a, 0) for a in spec.attacks}
    assert {a for a in now if now[a] != before[a]} == {"hidden"}


def test_attacks_the_population_cannot_carry_are_refused_before_training():
    two_classes = study_zoo(2, 1, types=["warp"], source_modes=["all"]) | {"classes": [2, 2]}
    with pytest.raises(ConfigError, match="composite needs models of at least 3 classes"):
        parse_spec(_spec(zoo=two_classes, attacks={"composite": {"models": 1}}))
    with pytest.raises(ConfigError, match="divisible by 2"):
        parse_spec(_spec(attacks={"input_aware": {"models": 1, "generator_steps": 5, "batch_size": 10}}))
    with pytest.raises(ConfigError, match="scanner_options"):  # checked over the study's ABS options
        parse_spec(_spec(attacks={"composite": {"models": 1, "scanner_options": {"max_size_fraction": 2.0}}}))
