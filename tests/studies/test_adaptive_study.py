"""The adaptive-attack study (issue 19 §2, EX-RAY Table 7) end to end on a seconds-fast design: the clean
zoo once, one trojaned zoo per weight trained with the adaptive loss, ABS + EX-RAY over every model, Table 7
per weight, the files, resuming from the cache, the CLI, and the table's arithmetic."""

import csv
import json
from pathlib import Path

import pytest
from tests.studies.study_specs import FAST_SCAN, study_zoo
from tests.zoo.conftest import micro_spec

from exray.cli import main
from exray.errors import ConfigError
from exray.pipeline import Calibration
from exray.studies.adaptive import parse_spec, run_adaptive_study, table7, write_report


def _spec(**overrides):
    return {
        "name": "adaptive-micro",
        "zoo": study_zoo(2, 1),
        "weights": [0.5, 5],
        "scan": FAST_SCAN,
    } | overrides


def _zoo_dir(cache: Path, prefix: str) -> Path:
    return next(p for p in (cache / "zoos").iterdir() if p.is_dir() and p.name.startswith(prefix))


def test_the_study_trains_each_weight_and_writes_table_7(tmp_path):
    spec = parse_spec(_spec())
    results = run_adaptive_study(spec, tmp_path / "out", cache_root=tmp_path / "cache")
    assert [row["weight"] for row in results["table"]] == [0.5, 5.0]
    assert len(results["clean"]) == 2 and not any(r["poisoned"] for r in results["clean"])
    for weight, records in results["trojaned"].items():
        assert len(records) == 1 and records[0]["poisoned"]
        zoo = _zoo_dir(tmp_path / "cache", f"adaptive-micro-w{weight}-")
        config = json.loads((zoo / records[0]["model"] / "config.json").read_text())
        assert config["zoo"]["recipe"]["spec"]["training"]["adaptive"]["weight"] == float(weight)
        history = config["training"]["history"]
        assert any(name.startswith("adaptive_") for name in history[0]["terms"])  # the loss was applied
    clean_zoo = _zoo_dir(tmp_path / "cache", "adaptive-micro-clean-")
    clean_config = json.loads(next(clean_zoo.glob("id-*/config.json")).read_text())
    assert "adaptive" not in clean_config["zoo"]["recipe"]["spec"]["training"]  # clean models: no term
    paths = write_report(results, tmp_path / "out")
    assert [r["weight"] for r in csv.DictReader(paths["csv"].open())] == ["0.5000", "5.0000"]
    assert "paper: acc" in paths["markdown"].read_text()
    scans = sorted((tmp_path / "out" / "scans").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in scans]
    again = run_adaptive_study(spec, tmp_path / "out", cache_root=tmp_path / "cache")
    assert [p.stat().st_mtime_ns for p in scans] == stamps and again["table"] == results["table"]
    record = json.loads(scans[0].read_text())
    assert record["settings"]["precision"] == results["mask_precision"] == "fp32"  # keyed by what ran


def test_table_7_rates():
    clean = [{"score": s, "abs_score": a} for s, a in ((0.95, 1.0), (0.3, 0.95), (0.0, 0.5), (0.6, 0.9))]
    strong = {"score": 0.99, "abs_score": 1.0, "clean_accuracy": 0.9, "attack_success_rate": 1.0}
    weak = {"score": 0.5, "abs_score": 0.97, "clean_accuracy": 0.8, "attack_success_rate": 0.9}
    trojaned = {10.0: [strong, weak]}
    (row,) = table7(clean, trojaned, Calibration())  # flagged: score >= 0.875
    assert row["tp_rate"] == 0.5 and row["fp_rate"] == 0.25 and row["abs_tp_rate"] == 1.0
    assert row["abs_fp_rate"] == 0.75
    assert row["paper_fp_rate"] == 0.5  # clean scores >= the weakest trojan's 0.5: 0.95 and 0.6
    assert row["clean_accuracy"] == pytest.approx(0.85) and row["attack_success_rate"] == pytest.approx(0.95)


def test_bad_specs_are_refused():
    with pytest.raises(ConfigError, match="zoo"):
        parse_spec({"name": "x"})
    with pytest.raises(ConfigError, match="needs clean models"):
        parse_spec(_spec(zoo=micro_spec(models={"clean": 0, "trojaned": 1})))
    with pytest.raises(ConfigError, match="weights"):
        parse_spec(_spec(weights=[]))
    with pytest.raises(ConfigError, match="scanner_options"):
        parse_spec(_spec(scan={"scanner_options": {"no_such_option": 1}}))


def test_the_cli_runs_the_study(tmp_path, monkeypatch):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps(_spec(weights=[1])))
    monkeypatch.setenv("EXRAY_CACHE", str(tmp_path / "cache"))
    assert (
        main(["study", "adaptive", str(spec), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
        == 0
    )
    assert (tmp_path / "out" / "study-adaptive.csv").is_file()


def test_the_shipped_spec_is_valid():
    from exray.studies.adaptive import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "studies" / "adaptive.yaml")
    assert spec.weights == (1.0, 10.0, 100.0, 1000.0, 10000.0)
    assert spec.weighted_zoo(100.0).training.adaptive.weight == 100.0
    assert spec.clean_zoo().models.trojaned == 0 and spec.weighted_zoo(1.0).models.clean == 0
