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
from exray.studies.semantic import load_spec, parse_spec, run_semantic_study


def _spec(**overrides):
    zoo = study_zoo(2, 2, types=["reflection", "warp"], source_modes=["all"], fraction=[0.5, 0.5])
    return {"name": "semantic-micro", "zoo": zoo, "scan": FAST_SCAN} | overrides


def test_the_study_evaluates_each_attack_group(tmp_path):
    results = run_semantic_study(parse_spec(_spec()), tmp_path / "out", cache_root=tmp_path / "cache")
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


def test_specs_are_checked_and_the_shipped_one_is_valid():
    with pytest.raises(ConfigError, match="clean and trojaned"):
        parse_spec(_spec(zoo=micro_spec(models={"clean": 0, "trojaned": 1})))
    with pytest.raises(ConfigError, match="scanner_options"):
        parse_spec(_spec(scan={"scanner_options": {"bogus": 1}}))
    spec = load_spec(Path(__file__).resolve().parents[2] / "studies" / "semantic.yaml")
    assert spec.zoo.triggers.types == ("reflection", "warp")
    assert spec.evaluation().scanner_options["max_size_fraction"] == 0.25


def test_the_cli_runs_the_study(tmp_path, monkeypatch):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps(_spec()))
    monkeypatch.setenv("EXRAY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["study", "semantic", str(spec), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert (out / "study-semantic.csv").is_file()
