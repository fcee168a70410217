"""`exray demo` end to end on a seconds-fast zoo: build into the cache, scan, refine, table, HTML; a
second run reuses every cached stage."""

import json
from pathlib import Path

import yaml
from tests.zoo.conftest import micro_spec

from exray.cli import main
from exray.evaluation.demo import SHIPPED_ZOOS

MICRO = micro_spec(
    name="micro-demo",
    seed=3,
    data={"train_per_class": 20, "test_per_class": 10, "attack_per_class": 10, "examples_per_class": [3, 3]},
)


def test_demo_builds_scans_and_reports_then_reuses_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXRAY_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "micro.yaml"
    spec.write_text(yaml.safe_dump(MICRO))
    out = tmp_path / "demo"
    args = ["demo", "--spec", str(spec), "--out", str(out), "--methods", "inner_l2", "exray", "--quiet"]

    assert main(args) == 0
    printed = capsys.readouterr().out
    for title in ("ABS", "Inner L2", "EX-RAY"):
        assert title in printed
    assert "HTML report:" in printed
    assert (out / "index.html").exists() and (out / "table.csv").exists()
    models = list((tmp_path / "cache" / "zoos").glob("micro-demo-*/id-*"))
    assert len(models) == 2

    scans = sorted((out / "cache" / "scan-abs").glob("*.json"))
    assert len(scans) == 2
    stamps = [p.stat().st_mtime_ns for p in scans]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["method"] for r in rows} == {"abs", "inner_l2", "exray"}
    assert [p.stat().st_mtime_ns for p in scans] == stamps  # nothing was scanned again


def test_demo_names_a_missing_spec(tmp_path, capsys):
    assert main(["demo", "--spec", str(tmp_path / "nope.yaml"), "--quiet"]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_the_shipped_specs_are_package_data_and_zoos_links_to_them():
    root = Path(__file__).resolve().parents[2]
    assert {p.name for p in SHIPPED_ZOOS.glob("*.yaml")} >= {"tiny.yaml", "demo.yaml", "r2-like.yaml"}
    assert (root / "zoos").resolve() == SHIPPED_ZOOS.resolve()
