"""`exray evaluate` end to end on a fast hand-wired population: rows, files, cache, failures, CLI."""

import csv
import dataclasses
import json
import shutil

import pytest

import exray.evaluation.evaluate as evaluate_module
import exray.evaluation.per_model as per_model
from exray import utils
from exray.cli import main
from exray.errors import ConfigError
from exray.evaluation import EvaluationConfig, evaluate_zoo
from exray.models import build_model
from exray.models.io import save_model
from exray.pipeline import Calibration
from exray.refinement import list_methods

from .conftest import FAST, read_json, write_colour_zoo

ROWS = ["abs", *list_methods()]


@pytest.fixture(scope="module")
def evaluated(colour_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    return evaluate_zoo(colour_zoo, out, config=FAST, progress=False)


def test_every_group_has_every_row_and_the_refinements_remove_the_false_positives(evaluated):
    assert evaluated.groups == ["polygon", "filter", "all"]
    for group in evaluated.groups:
        assert [r.method for r in evaluated.rows if r.group == group] == ROWS
    abs_all = evaluated.row("all", "abs")
    assert (abs_all.counts.tp, abs_all.counts.fp) == (2, 2)  # the natural green trigger in every model
    assert abs_all.fp_reduction is None and abs_all.roc_auc == 0.5
    for method in ("exray", "exray_v2t", "exray_t2v", "inner_l2", "ig", "deeplift", "occlusion"):
        row = evaluated.row("all", method)
        assert (row.counts.tp, row.counts.fp, row.accuracy) == (2, 0, 1.0), method
        assert (row.fp_reduction, row.tp_loss, row.roc_auc) == (1.0, 0.0, 1.0)
        assert row.cross_entropy < abs_all.cross_entropy
    polygon = evaluated.row("polygon", "exray")
    assert (polygon.trojaned, polygon.clean, polygon.counts.tn) == (1, 2, 2)  # the same clean models


def test_network_dissection_is_blank_where_filters_are_injected(evaluated):
    assert evaluated.row("polygon", "ne").counts is not None
    for group in ("filter", "all"):
        row = evaluated.row(group, "ne")
        assert row.counts is None and row.accuracy is None and "filter" in row.note


def test_thresholds_and_calibration_are_reported(evaluated):
    assert set(evaluated.thresholds) == set(list_methods())
    assert set(evaluated.thresholds["inner_l2"]["thresholds"]) == {"patch"}
    assert evaluated.thresholds["inner_rf"]["halves"]
    text = evaluated.table()
    assert "calibration: default" in text and "Inner L2: best model-level separation" in text
    assert "not applicable to filter triggers" in text


def test_files(evaluated):
    files = evaluated.files
    with files["csv"].open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 3 * len(ROWS) and lines[0]["method"] == "abs"
    data = read_json(files["json"])
    assert data["config"]["calibration_source"] == "default" and len(data["models"]) == 4
    assert data["rows"] == [r.to_dict() for r in evaluated.rows]
    trojaned = next(m for m in data["models"] if m["poisoned"])
    assert any(t["injected"] and t["scores"]["exray"] == 1.0 for t in trojaned["triggers"])
    page = files["html"].read_text()
    assert "roc.png" in page and all(r.title in page for r in evaluated.rows)
    assert files["roc"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_run_reuses_every_scan_and_score(colour_zoo, evaluated, monkeypatch):
    def no_rescan(*args, **kwargs):
        raise AssertionError("the cached scan was not reused")

    monkeypatch.setattr(per_model, "scan", no_rescan)
    monkeypatch.setattr(per_model, "_measure", no_rescan)
    again = evaluate_zoo(colour_zoo, evaluated.out, config=FAST, progress=False)
    assert again.computed == {} and not again.errors
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in evaluated.rows]


def test_a_changed_setting_recomputes_only_its_stage(colour_zoo, evaluated, monkeypatch):
    def no_rescan(*args, **kwargs):
        raise AssertionError("the cached scan was not reused")

    monkeypatch.setattr(per_model, "scan", no_rescan)
    config = dataclasses.replace(FAST, method_options={"ig": {"steps": 8}})
    again = evaluate_zoo(colour_zoo, evaluated.out, config=config, progress=False, write=False)
    assert again.computed == {"ig": 4} and not again.files


def test_workers_evaluate_the_models_in_processes_with_the_same_decisions(
    colour_zoo, evaluated, tmp_path, monkeypatch
):
    zoo = tmp_path / "zoo"
    shutil.copytree(colour_zoo, zoo)
    (zoo / "id-00000001" / "model.safetensors").write_bytes(b"not weights")  # one model fails in a worker
    config = dataclasses.replace(FAST, methods=("exray",))
    monkeypatch.setattr(utils, "available_cores", lambda: 2)  # two worker processes on any machine
    result = evaluate_zoo(zoo, tmp_path / "out", config=config, progress=False, workers=2, threads=3)
    assert [m.name for m in result.models] == [m.name for m in evaluated.models]  # the population's order
    assert list(result.errors) == ["id-00000001"] and "scan" in result.errors["id-00000001"]
    serial = {m.name: m for m in evaluated.models}
    for model in result.models:
        if model.name != "id-00000001":
            assert model.outcomes["exray"].flagged == serial[model.name].outcomes["exray"].flagged, model.name
    assert result.computed == {"scan": len(result.models), "exray": len(result.models) - 1}
    record = read_json(next((tmp_path / "out" / "cache" / "exray").glob("*.json")))
    assert record["threads"] == 3  # each worker ran on the thread budget it was given (no machine's default)
    dispatched, pooled = [], evaluate_module.run_pooled

    def spy(job, tasks, workers, threads):
        dispatched.extend(task[0].name for task in tasks)
        return pooled(job, tasks, workers, threads)

    monkeypatch.setattr(evaluate_module, "run_pooled", spy)
    again = evaluate_zoo(zoo, tmp_path / "out", config=config, progress=False, workers=2, threads=3)
    assert again.computed == {"scan": 1}  # the workers' caches are the evaluation's; a failure is retried
    assert dispatched == ["id-00000001"]  # cached models are read in this process, not sent to workers


def test_a_worker_that_dies_is_recorded_and_the_rest_evaluated(colour_zoo, tmp_path, monkeypatch):
    def pooled(job, tasks, workers, threads):  # run_pooled when task 0 kills its worker even alone
        yield 0, None, "worker process died: killed"
        for index, task in enumerate(tasks[1:], start=1):
            yield index, job(*task), None

    monkeypatch.setattr(evaluate_module, "run_pooled", pooled)
    monkeypatch.setattr(utils, "available_cores", lambda: 2)  # two workers on any machine
    config = dataclasses.replace(FAST, methods=("inner_l2",))
    result = evaluate_zoo(colour_zoo, tmp_path / "out", config=config, progress=False, workers=2)
    first = result.models[0]
    assert result.errors[first.name] == {"scan": "worker process died: killed"}  # reported as unscanned
    assert first.outcomes["inner_l2"].probability is None and not first.outcomes["inner_l2"].flagged
    assert len(result.errors) == 1 and result.computed["scan"] == len(result.models) - 1  # the rest ran
    with pytest.raises(ConfigError, match="workers"):
        evaluate_zoo(colour_zoo, tmp_path / "out", config=config, progress=False, workers=0)
    with pytest.warns(UserWarning, match="3 workers on 2 cores: using 2"):
        evaluate_zoo(colour_zoo, tmp_path / "out", config=config, progress=False, workers=3)


def test_a_broken_model_is_recorded_and_the_rest_evaluated(colour_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(colour_zoo, zoo)
    (zoo / "id-00000001" / "model.safetensors").write_bytes(b"not weights")
    config = dataclasses.replace(FAST, methods=("inner_l2", "exray"))
    result = evaluate_zoo(zoo, tmp_path / "out", config=config, progress=False)
    assert list(result.errors) == ["id-00000001"] and "scan" in result.errors["id-00000001"]
    broken = next(m for m in result.models if m.name == "id-00000001")
    assert broken.outcomes["exray"].probability is None and not broken.outcomes["exray"].flagged
    row = result.row("all", "exray")
    assert (row.counts.tp, row.counts.fn, row.counts.fp) == (1, 1, 0)  # counted, as not flagged
    assert "error: id-00000001 scan" in result.table()


def test_groups_leave_out_the_other_trojans_and_keep_every_clean_model(colour_zoo, evaluated, tmp_path):
    """Table 3's population (EXP §4.2): clean and polygon-trojaned models only."""
    config = dataclasses.replace(FAST, methods=("exray",), groups=("polygon",))
    result = evaluate_zoo(colour_zoo, evaluated.out, config=config, progress=False, write=False)
    assert sorted(m.name for m in result.models) == ["id-00000000", "id-00000001", "id-00000002"]
    assert "'filter'" in result.skipped["id-00000003"] and result.computed == {}  # the cache still serves
    assert result.groups == ["polygon", "all"]
    assert (result.row("all", "exray").trojaned, result.row("all", "exray").clean) == (1, 2)
    with pytest.raises(ConfigError, match=r"no trojaned model .* its groups: \['filter', 'polygon'\]"):
        evaluate_zoo(colour_zoo, tmp_path, config=dataclasses.replace(config, groups=("magic",)))
    with pytest.raises(ConfigError, match="groups"):
        EvaluationConfig(groups="polygon")
    with pytest.raises(ConfigError, match="groups"):
        EvaluationConfig(groups=5)
    typo = dataclasses.replace(config, groups=("polygon", "polygn"))
    with pytest.warns(UserWarning, match=r"\['polygn'\] match no trojaned model"):
        evaluate_zoo(colour_zoo, evaluated.out, config=typo, progress=False, write=False)


def test_config_validation(colour_zoo, tmp_path):
    with pytest.raises(ConfigError, match="unknown methods"):
        EvaluationConfig(methods=("magic",))
    with pytest.raises(ConfigError, match="scanner"):
        EvaluationConfig(scanner="magic")
    with pytest.raises(ConfigError, match="unknown methods"):
        EvaluationConfig(methods=("exray",), method_options={"magic": {}})
    with pytest.raises(ConfigError, match="steps"):
        EvaluationConfig(method_options={"ig": {"steps": 1}})
    with pytest.raises(ConfigError, match="not both"):
        evaluate_zoo(colour_zoo, tmp_path, config=FAST, methods=["exray"])


def test_command_line(colour_zoo, tmp_path, capsys, monkeypatch):
    import exray.cli.evaluate as command

    out = tmp_path / "cli"
    argv = ["evaluate", str(colour_zoo), "--out", str(out), "--methods", "inner_l2", "exray"]
    assert main([*argv, "--epochs", "100", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "EX-RAY" in printed.out and "Inner L2" in printed.out and "index.html" in printed.err
    asked, real = [], command.evaluate_zoo
    monkeypatch.setattr(command, "evaluate_zoo", lambda *a, **k: asked.append(k["workers"]) or real(*a, **k))
    monkeypatch.setattr(utils, "available_cores", lambda: 2)
    assert main([*argv, "--epochs", "100", "--quiet", "--json", "--workers", "2"]) == 0  # from the cache
    assert asked == [2]
    summary = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in summary["rows"] if r["group"] == "all"] == ["abs", "inner_l2", "exray"]
    assert main(["evaluate", str(tmp_path / "missing"), "--out", str(out), "--quiet"]) == 2


def test_a_population_that_cannot_be_scanned_still_gives_a_table(colour_zoo, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    shutil.copytree(colour_zoo, zoo)
    for weights in zoo.glob("*/model.safetensors"):
        weights.write_bytes(b"not weights")
    out = tmp_path / "out"
    assert main(["evaluate", str(zoo), "--out", str(out), "--methods", "ig", "--quiet"]) == 1
    assert "no model could be scanned" in capsys.readouterr().out
    data = read_json(out / "evaluation.json")
    assert len(data["errors"]) == 4 and data["rows"][0]["tp"] == 0


def test_scores_pair_each_models_score_with_its_ground_truth(evaluated):
    scores, labels = evaluated.scores("exray")
    assert labels == [int(m.truth.poisoned) for m in evaluated.models]
    assert scores == [m.outcomes["exray"].score for m in evaluated.models]
    assert min(s for s, y in zip(scores, labels) if y) > max(s for s, y in zip(scores, labels) if not y)


def test_calibrate_fits_a_method_of_an_evaluation(evaluated, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["calibrate", str(evaluated.files["json"]), "--method", "exray", "--out", str(out)]) == 0
    assert "4 models" in capsys.readouterr().out
    assert read_json(out)["provenance"]["method"] == "exray"
    fitted = Calibration.load(out)
    for model in evaluated.models:  # EX-RAY separates this population: the fit learns the cut
        assert (fitted.probability(model.outcomes["exray"].score) > 0.5) == model.truth.poisoned
    assert main(["calibrate", str(evaluated.files["json"]), "--method", "nope", "--out", str(out)]) == 2
    assert "abs" in capsys.readouterr().err


def test_the_evaluate_flags_reach_the_config(tmp_path):
    from exray.cli import build_parser
    from exray.cli.evaluate import config_from

    flags = [
        "--methods",
        "exray",
        "--layer",
        "block:1",
        "--patience",
        "20",
        "--precision",
        "bf16",
        "--loss",
        "paper",
    ]
    options = ["--scanner-option", "epochs=20", "--scanner-option", "modes=[patch]"]
    args = build_parser().parse_args(["evaluate", str(tmp_path), *flags, *options])
    config = config_from(args)
    assert config.groups is None
    grouped = build_parser().parse_args(["evaluate", str(tmp_path), "--groups", "polygon", "polygon"])
    assert config_from(grouped).groups == ("polygon",)
    assert config.layer == "block:1" and config.methods == ("exray",)
    assert (config.mask_config.patience, config.mask_config.precision) == (20, "bf16")
    assert (
        config.mask_config.loss == "paper" and config.method("exray").options()["config"]["loss"] == "paper"
    )
    assert config.scanner_options == {"epochs": 20, "modes": ("patch",)}


def test_a_model_rebuilt_in_place_is_scanned_again(colour_zoo, tmp_path):
    """The caches are keyed by settings and model name; a zoo rebuilt into the same directory (another
    seed, thread count or CPU) has other weights, so its scans and scores must not be reused."""
    zoo, out = shutil.copytree(colour_zoo, tmp_path / "zoo"), tmp_path / "out"
    config = dataclasses.replace(FAST, methods=("inner_l2",))
    evaluate_zoo(zoo, out, config=config, progress=False, write=False)
    rebuilt = build_model(
        "colour_detectors", 4, votes=[{"red": 2}, {"green": 2.4}, {"blue": 2}, {"yellow": 2}]
    )
    save_model(rebuilt, zoo / "id-00000001", input_size=(3, 16, 16), metadata={"poisoned": True})
    again = evaluate_zoo(zoo, out, config=config, progress=False, write=False)
    assert again.computed == {"scan": 1, "inner_l2": 1}


def test_rules_from_a_separate_population_are_applied_out_of_sample(evaluated, tmp_path):
    other = write_colour_zoo(tmp_path / "zoo", variant=1)
    result = evaluate_zoo(other, tmp_path / "out", config=FAST, progress=False, rules_from=evaluated)
    for name in ("inner_l2", "ig", "deeplift", "occlusion", "ne"):
        assert result.thresholds[name]["thresholds"] == evaluated.thresholds[name]["thresholds"], name
        assert "reference" in result.thresholds[name]["rule"]
        method = evaluated.fitted[name]
        for model in result.models:  # every decision is the reference's threshold applied to this score
            expected = [
                i
                for i, score in model.scores[name].items()
                if score.value is not None
                and model.triggers[i].kind in method.thresholds
                and score.value < method.thresholds[model.triggers[i].kind]
            ]
            assert model.outcomes[name].pruned == sorted(expected), (name, model.name)
    forest = evaluated.fitted["inner_rf"]
    assert "reference" in result.thresholds["inner_rf"]["rule"]
    for model in result.models:
        scores = [model.scores["inner_rf"][i] for i in sorted(model.scores["inner_rf"])]
        rows = [list(s.details["features"].values()) for s in scores]
        assert [s.value for s in scores] == forest.probabilities(rows)
    # the design carries over: every refinement still removes the natural trigger's false positives
    for method in ("exray", "inner_l2", "ig", "deeplift", "occlusion", "inner_rf"):
        row = result.row("all", method)
        assert (row.counts.tp, row.counts.fp) == (2, 0), method


def test_rules_from_the_same_models_or_other_settings_are_refused(colour_zoo, evaluated, tmp_path):
    with pytest.raises(ConfigError, match="shares 4 model"):
        evaluate_zoo(colour_zoo, tmp_path / "a", config=FAST, progress=False, rules_from=evaluated)
    other = write_colour_zoo(tmp_path / "zoo", variant=2)
    with pytest.raises(ConfigError, match="layer"):
        evaluate_zoo(
            other,
            tmp_path / "b",
            config=dataclasses.replace(FAST, layer="block:0"),
            progress=False,
            rules_from=evaluated,
        )
    partial = dataclasses.replace(evaluated, fitted={})
    with pytest.raises(ConfigError, match="no fitted rule"):
        evaluate_zoo(other, tmp_path / "c", config=FAST, progress=False, rules_from=partial)
    no_forest = dataclasses.replace(
        evaluated, fitted={k: v for k, v in evaluated.fitted.items() if k != "inner_rf"}
    )
    with pytest.raises(ConfigError, match="inner_rf"):
        evaluate_zoo(other, tmp_path / "d", config=FAST, progress=False, rules_from=no_forest)


def test_the_command_line_fits_the_baselines_on_another_zoo(colour_zoo, tmp_path, capsys):
    other = write_colour_zoo(tmp_path / "zoo", variant=1)
    argv = ["evaluate", str(other), "--rules-from", str(colour_zoo), "--methods", "inner_l2", "exray"]
    code = main([*argv, "--epochs", "100", "--out", str(tmp_path / "out"), "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert "reference" in summary["thresholds"]["inner_l2"]["rule"]
    assert (tmp_path / "out" / "rules-from" / "evaluation.json").is_file()
    code = main(
        [*argv[:2], "--rules-from", str(other), "--methods", "inner_l2", "--quiet", "--out", str(tmp_path)]
    )
    assert code != 0
    assert "shares 4 model" in capsys.readouterr().err


def test_an_evaluation_of_exray_alone_can_let_it_choose_the_layer_per_model(colour_zoo, tmp_path):
    config = dataclasses.replace(FAST, methods=("exray",), layer="auto")
    result = evaluate_zoo(colour_zoo, tmp_path, config=config, progress=False, write=False)
    row = result.row("all", "exray")
    assert (row.counts.tp, row.counts.fp) == (2, 0)
    for model in result.models:
        for score in model.scores["exray"].values():
            assert any("chosen by auto" in note for note in score.verdict.notes)


def test_scores_are_cached_per_trigger_so_another_gate_judges_only_what_is_missing(
    colour_zoo, tmp_path, monkeypatch
):
    """Refitting the calibration moves the gate; the cached scores are not keyed by it: a higher gate
    reuses a subset, a lower one judges only the triggers between the two gates."""
    real_scan = per_model.scan

    def varied_asr(*args, **kwargs):  # every trigger here flips all images; give every other one ASR 0.6
        result = real_scan(*args, **kwargs)
        for n, report in enumerate(result.triggers):
            report.found = dataclasses.replace(report.found, asr=0.6 if n % 2 else 1.0)
        return result

    monkeypatch.setattr(per_model, "scan", varied_asr)
    methods = ("exray", "inner_l2")
    base = dataclasses.replace(FAST, methods=methods)
    first = evaluate_zoo(colour_zoo, tmp_path, config=base, progress=False, write=False)
    gate = base.gate
    low = 0.3
    between = [
        m.name for m in first.models if any(low - 1e-6 <= t.asr < gate - 1e-6 for t in m.triggers or [])
    ]
    assert between, "the population needs triggers between the two gates"
    measured = []
    real_measure = per_model._measure

    def counted(method, model, cases, config):
        measured.append(len(cases))
        return real_measure(method, model, cases, config)

    monkeypatch.setattr(per_model, "_measure", counted)
    lower = evaluate_zoo(
        colour_zoo, tmp_path, config=dataclasses.replace(base, min_asr=low), progress=False, write=False
    )
    assert lower.computed == {name: len(between) for name in methods}
    weak = sum(1 for m in first.models for t in m.triggers if t.asr < gate - 1e-6)
    assert sum(measured) == weak * len(methods)  # only the triggers the first gate left out
    for m_first, m_lower in zip(first.models, lower.models):
        for name in methods:
            strong = m_first.scores[name]
            assert {i: s.value for i, s in strong.items()} == {
                i: s.value for i, s in m_lower.scores[name].items() if i in strong
            }
            assert len(m_lower.scores[name]) >= len(strong)
    again = evaluate_zoo(colour_zoo, tmp_path, config=base, progress=False, write=False)
    assert again.computed == {}
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in first.rows]

    def broken(method, model, cases, config):
        raise RuntimeError("the method failed on the added triggers")

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(per_model, "_measure", real_measure)
    evaluate_zoo(colour_zoo, fresh, config=base, progress=False, write=False)
    monkeypatch.setattr(per_model, "_measure", broken)  # a failure while adding keeps what was cached
    failed = evaluate_zoo(
        colour_zoo, fresh, config=dataclasses.replace(base, min_asr=low), progress=False, write=False
    )
    assert all("failed on the added" in m.errors["exray"] for m in failed.models)
    kept = [sorted(m.scores["exray"]) for m in failed.models]
    assert kept == [sorted(m.scores["exray"]) for m in first.models]
    assert evaluate_zoo(colour_zoo, fresh, config=base, progress=False, write=False).computed == {}
    # with layer="auto" the layer is chosen from the triggers judged together: the gate stays in the key
    auto = dataclasses.replace(base, methods=("exray",), layer="auto")
    assert auto.method_settings("exray", "k") != dataclasses.replace(auto, min_asr=low).method_settings(
        "exray", "k"
    )
    for m_first, m_again in zip(first.models, again.models):
        for name in methods:
            assert sorted(m_again.scores[name]) == sorted(m_first.scores[name])


def test_a_record_cached_under_the_gate_keyed_scheme_is_still_reused(colour_zoo, tmp_path):
    from exray.evaluation.cache import settings_key

    config = dataclasses.replace(FAST, methods=("inner_l2",))
    evaluate_zoo(colour_zoo, tmp_path, config=config, progress=False, write=False)
    scan_key = settings_key(config.scan_settings())
    legacy = settings_key(config.method_settings("inner_l2", scan_key, legacy=True))
    for path in (tmp_path / "cache" / "inner_l2").glob("*.json"):  # as written before: no min_asr field
        record = read_json(path)
        del record["min_asr"]
        path.write_text(json.dumps({**record, "key": legacy}))
    again = evaluate_zoo(colour_zoo, tmp_path, config=config, progress=False, write=False)
    assert again.computed == {}


def test_another_policy_redecides_the_stored_masks_without_recomputing_them(
    colour_zoo, tmp_path, monkeypatch
):
    """EX-RAY's masks do not depend on its policy: an evaluation under another policy — a named one, or a
    policy object that shares a shipped policy's name — or from records whose key still held the policy,
    re-decides the stored verdicts and gives what a fresh run under that policy gives."""
    from exray.differencing.policies import PaperPolicy
    from exray.evaluation.cache import settings_key

    always = PaperPolicy(beta=-1.0, cross_check=False)  # every trigger natural; named "paper" all the same
    base = dataclasses.replace(FAST, methods=("exray",))
    pruning = dataclasses.replace(base, method_options={"exray": {"policy": always}})
    named = dataclasses.replace(base, policy="paper")
    configs = {"base": base, "pruning": pruning, "named": named}
    fresh = {
        name: evaluate_zoo(colour_zoo, tmp_path / name, config=config, progress=False, write=False)
        for name, config in configs.items()
    }
    assert fresh["base"].row("all", "exray").counts.tp == 2
    assert fresh["pruning"].row("all", "exray").counts.tp == 0  # every trigger pruned

    def no_masks(*args, **kwargs):
        raise AssertionError("the stored masks were not reused")

    monkeypatch.setattr(per_model, "_measure", no_masks)
    for name in ("pruning", "named", "base", "pruning"):
        again = evaluate_zoo(colour_zoo, tmp_path / "base", config=configs[name], progress=False, write=False)
        assert again.computed == {}, name
        assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in fresh[name].rows], name
    # records written while the key still held the policy (per-record gate, or keyed by the gate) are read
    # and re-decided: the pruning run's verdicts, stored under the old keys, judged by the base policy
    scan_key = settings_key(base.scan_settings())
    for legacy in (False, True):
        old = settings_key(
            base.method_settings(
                "exray", scan_key, legacy=legacy, options={**base.method("exray").options(), "policy": "r3"}
            )
        )
        for path in (tmp_path / "pruning" / "cache" / "exray").glob("*.json"):
            record = {**read_json(path), "key": old}
            if legacy:  # as written before the gate left the key: no min_asr field
                del record["min_asr"]
            (tmp_path / "base" / "cache" / "exray" / path.name).write_text(json.dumps(record))
        back = evaluate_zoo(colour_zoo, tmp_path / "base", config=base, progress=False, write=False)
        assert back.computed == {}
        assert [r.to_dict() for r in back.rows] == [r.to_dict() for r in fresh["base"].rows]
