"""The repair study (issue 19 §2, EX-RAY Table 8) end to end on a seconds-fast zoo: every model's pair
matrices before and after, the pair chosen by the ground truth (trojaned) or the smallest trigger (clean),
the equal budget, Table 8 per group, the files, resuming from the cache, and the CLI."""

import csv
import json
from pathlib import Path

import pytest
from tests.studies.study_specs import study_zoo

from exray.cli import main
from exray.errors import ConfigError
from exray.studies.repair import load_spec, parse_spec, run_repair_study, table8, write_report


def _spec(**overrides):
    zoo = study_zoo(1, 1)
    return {
        "name": "repair-micro",
        "seed": 1,
        "zoo": zoo,
        "nc": {"epochs": 3},
        "repair": {"epochs": 2},
    } | overrides


def test_the_study_repairs_every_model_and_writes_table_8(tmp_path, monkeypatch):
    monkeypatch.setenv("EXRAY_CACHE", str(tmp_path / "cache"))
    spec = parse_spec(_spec())
    results = run_repair_study(spec, tmp_path / "out", cache_root=tmp_path / "cache")
    records = {r["group"]: r for r in results["records"]}
    assert set(records) == {"natural", "injected"} and not any(r["cached"] for r in results["records"])
    for record in records.values():
        matrix = record["matrix_before"]
        assert len(matrix) == 3 and all(matrix[c][c] is None for c in range(3))
        assert all(matrix[t][v] is not None for t in range(3) for v in range(3) if t != v)
        victim, target = record["pair"]
        assert record["size_in_matrix_before"] == matrix[target][victim] and record["size_before"] > 0
        assert record["size_after"] == record["matrix_after"][target][victim]
        assert record["repair"]["epochs"] <= 2
        if record["repair"]["epochs"]:  # repaired weights: Neural Cleanse sees another model afterwards
            assert record["matrix_after"] != matrix
    trojaned = records["injected"]
    truth = json.loads((Path(results["zoo"]) / trojaned["model"] / "config.json").read_text())
    assert Path(results["zoo"]).is_relative_to(tmp_path / "cache")  # built into the given cache
    assert trojaned["pair"] == [
        truth["triggers"][0]["source_classes"][0],
        truth["triggers"][0]["target_class"],
    ]
    assert trojaned["chosen_by"] == "planted"
    clean = records["natural"]
    sizes = [(clean["matrix_before"][t][v], v, t) for t in range(3) for v in range(3) if t != v]
    assert clean["chosen_by"] == "smallest trigger" and clean["pair"] == list(min(sizes)[1:])
    assert results["table"] == table8(results["records"])
    assert results["table"]["injected"]["size_before"] == pytest.approx(trojaned["size_before"])

    paths = write_report(results, tmp_path / "out")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert {r["model"] for r in rows} == {r["model"] for r in results["records"]}
    assert "paper: injected" in paths["markdown"].read_text()
    assert all(p.stat().st_size > 0 for k, p in paths.items() if k.startswith("heatmap:"))

    again = run_repair_study(spec, tmp_path / "out", cache_root=tmp_path / "cache")
    assert all(r["cached"] for r in again["records"])
    torn = tmp_path / "out" / "models" / f"{trojaned['model']}.json"
    torn.write_text(torn.read_text()[:50])  # an interrupted write: recomputed, never a crash
    third = run_repair_study(spec, tmp_path / "out", cache_root=tmp_path / "cache")
    assert {r["model"]: r["cached"] for r in third["records"]} == {
        trojaned["model"]: False,
        clean["model"]: True,
    }
    changed = run_repair_study(parse_spec(_spec(seed=2)), tmp_path / "out", cache_root=tmp_path / "cache")
    assert not any(r["cached"] for r in changed["records"])  # other settings: recomputed, never reused


def test_table_8_averages_per_group():
    rows = [
        {"group": "natural", "accuracy_before": 0.9, "accuracy_after": 0.8, "size_before": 20.0,
         "size_after": 30.0, "other_sizes_before": 50.0, "other_sizes_after": 60.0},
        {"group": "natural", "accuracy_before": 0.7, "accuracy_after": 0.6, "size_before": 10.0,
         "size_after": 50.0, "other_sizes_before": 40.0, "other_sizes_after": None},
    ]  # fmt: skip
    table = table8(rows)
    assert list(table) == ["natural"] and table["natural"]["models"] == 2
    assert table["natural"]["accuracy_before"] == pytest.approx(0.8)
    assert table["natural"]["size_after"] == pytest.approx(40.0)
    assert table["natural"]["other_sizes_after"] == pytest.approx(60.0)


def test_bad_specs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="zoo"):
        parse_spec({"name": "x"})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_spec(_spec(extra=1))
    with pytest.raises(ConfigError, match="mode"):
        parse_spec(_spec(nc={"mode": "universal"}))
    with pytest.raises(ConfigError, match="repair"):
        parse_spec(_spec(repair={"max_accuracy_drop": 2.0}))
    with pytest.raises(ConfigError, match="not found"):
        parse_spec(_spec(zoo="no-such-zoo.yaml"), base=tmp_path)
    assert load_spec("studies/repair.yaml").zoo.models.clean == 5


def test_the_cli_runs_the_study(tmp_path, monkeypatch):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps(_spec()))
    monkeypatch.setenv("EXRAY_CACHE", str(tmp_path / "cache"))
    assert (
        main(["study", "repair", str(spec), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 0
    )
    assert (tmp_path / "out" / "study-repair.csv").is_file()
