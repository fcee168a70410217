import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from exray.cli import build_parser, main
from exray.cli.scan import options_from
from exray.errors import ConfigError
from exray.pipeline import ScanOptions, read_results, scan_many

FAST = ScanOptions(scanner_options={"epochs": 10, "probe_epochs": 2})


@pytest.fixture(scope="module")
def broken_dirs(model_dirs, tmp_path_factory):
    """Next to the good models: corrupt weights, a pickled model, a directory with one class of examples."""
    root = tmp_path_factory.mktemp("broken")
    corrupt = shutil.copytree(model_dirs["clean"], root / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not safetensors")
    pickled = root / "pickled"
    pickled.mkdir()
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), pickled / "model.pt")  # not a TrojAI model
    one_class = shutil.copytree(model_dirs["clean"], root / "one-class")
    for png in (one_class / "clean-example-data").glob("class_[123]_*"):
        png.unlink()
    return {"corrupt": corrupt, "pickled": pickled, "one-class": one_class}


def test_failures_are_isolated_and_recorded(model_dirs, broken_dirs, tmp_path):
    out = tmp_path / "results.jsonl"
    paths = [broken_dirs["corrupt"], model_dirs["clean"], broken_dirs["pickled"], broken_dirs["one-class"]]
    records = {r["model"]: r for r in scan_many(paths, FAST, out=out, progress=False)}
    assert set(records) == {str(p) for p in paths}
    assert records[str(model_dirs["clean"])]["error"] is None
    assert records[str(model_dirs["clean"])]["probability"] is not None
    for name, message in (("corrupt", "corrupt"), ("pickled", "trust_pickle"), ("one-class", "two classes")):
        record = records[str(broken_dirs[name])]
        assert record["probability"] is None and message in record["error"]
    assert len(out.read_text().splitlines()) == 4


def test_a_results_file_resumes_the_batch(model_dirs, tmp_path):
    out = tmp_path / "results.jsonl"
    first = list(scan_many([model_dirs["clean"]], FAST, out=out, progress=False))
    out.write_text(out.read_text() + '{"model": "torn li')  # a crash in the middle of a line
    second = list(scan_many([model_dirs["clean"], model_dirs["planted"]], FAST, out=out, progress=False))
    assert [r["model"] for r in first] == [str(model_dirs["clean"])]
    assert [r["model"] for r in second] == [str(model_dirs["planted"])]  # the clean model is not rescanned
    assert set(read_results(out)) == {str(model_dirs["clean"]), str(model_dirs["planted"])}


def test_parallel_workers_give_the_same_records(model_dirs, tmp_path):
    paths = [model_dirs["clean"], model_dirs["planted"]]
    serial = {r["model"]: r for r in scan_many(paths, FAST, progress=False)}
    parallel = {r["model"]: r for r in scan_many(paths, FAST, workers=2, progress=False)}
    for model, record in serial.items():
        assert parallel[model]["probability"] == record["probability"]
        assert [t["pruned"] for t in parallel[model]["triggers"]] == [t["pruned"] for t in record["triggers"]]


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


def test_scan_command_writes_results_and_a_browsable_report(model_dirs, tmp_path, capsys):
    out, report = tmp_path / "r.jsonl", tmp_path / "report"
    args = [
        "scan",
        str(model_dirs["clean"]),
        str(model_dirs["planted"]),
        "--out",
        str(out),
        "--report",
        str(report),
    ]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "p(trojaned)=0.090" in printed and "p(trojaned)=0.860" in printed
    index = _Collector()
    index.feed((report / "index.html").read_text())
    assert len(index.links) == 2
    for link in index.links:
        page = _Collector()
        page.feed((report / link).read_text())
        assert page.images, link
        for image in page.images:
            assert (report / Path(link).parent / image).stat().st_size > 0


def test_scan_command_judges_from_every_flipped_victim_on_request(model_dirs, tmp_path):
    out, report = tmp_path / "r.jsonl", tmp_path / "report"
    args = [
        "scan",
        str(model_dirs["planted"]),
        "--victims",
        "flipped",
        "--out",
        str(out),
        "--report",
        str(report),
    ]
    assert main([*args, "--quiet"]) == 0
    (record,) = read_results(out).values()
    voted = [t for t in record["triggers"] if t["victim_votes"]]
    assert voted and record["probability"] > 0.8
    assert all(t["target"] not in map(int, t["victim_votes"]) for t in voted)
    assert all(
        t["pruned"] == (2 * list(t["victim_votes"].values()).count(False) <= len(t["victim_votes"]))
        for t in voted
    )
    (page,) = report.glob("*/index.html")
    assert "from each class it flips" in page.read_text()


def test_trojai_entry_point_writes_one_float(model_dirs, tmp_path):
    result = tmp_path / "result.txt"
    args = [
        "trojai",
        "--model_filepath", str(model_dirs["planted"] / "model.safetensors"),
        "--result_filepath", str(result),
        "--scratch_dirpath", str(tmp_path / "scratch"),
        "--examples_dirpath", str(model_dirs["planted"] / "clean-example-data"),
    ]  # fmt: skip
    assert main(args) == 0
    assert 0.0 <= float(result.read_text()) <= 1.0
    assert float(result.read_text()) > 0.5
    assert json.loads((tmp_path / "scratch" / "exray-result.json").read_text())["error"] is None


def test_trojai_entry_point_refuses_a_pickle_without_opt_in(tmp_path, capsys):
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "model.pt")  # not a TrojAI model
    result = tmp_path / "result.txt"
    args = ["trojai", "--model_filepath", str(tmp_path / "model.pt"), "--result_filepath", str(result),
            "--scratch_dirpath", str(tmp_path), "--examples_dirpath", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert result.read_text().strip() == "0.5"
    assert "trust_pickle" in capsys.readouterr().err


def test_calibrate_command_fits_on_ground_truth(model_dirs, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    list(scan_many([model_dirs["clean"], model_dirs["planted"]], FAST, out=out, progress=False))
    assert main(["calibrate", str(out), "--out", str(tmp_path / "c.json")]) == 0
    assert "cross-entropy" in capsys.readouterr().out
    # the file's content, not its suffix, tells scan results from an evaluation.json
    renamed = shutil.copy(out, tmp_path / "r.json")
    assert main(["calibrate", str(renamed), "--out", str(tmp_path / "c2.json")]) == 0
    first, second = (json.loads((tmp_path / n).read_text()) for n in ("c.json", "c2.json"))
    assert second["calibration"] == first["calibration"] and second["provenance"]["method"] == "scan"
    assert main(["calibrate", str(tmp_path / "missing.json")]) == 2
    scan_args = ["scan", str(model_dirs["planted"]), "--out", str(tmp_path / "again.jsonl")]
    assert main([*scan_args, "--calibration", str(tmp_path / "c.json"), "--quiet"]) == 0


def test_scanner_options_reach_the_scanner_and_bad_ones_stop_the_scan(model_dirs, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    base = ["scan", str(model_dirs["planted"]), "--out", str(out), "--no-refine", "--quiet", "--json"]
    assert main([*base, "--scanner-option", "epochs=0"]) == 2
    assert "epochs" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--scanner-option", "epochs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--scanner-option", "modes=[patch]", "--scanner-option", "top_n_neurons=1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["triggers"] and {t["kind"] for t in record["triggers"]} == {"patch"}


def test_min_asr_and_m1_pairing_reach_the_scan_and_coverage_reaches_the_report(model_dirs, tmp_path):
    """`--min-asr 1.0` (stricter than the official > 0.99 on 10 images) leaves triggers below it unjudged
    and counted; `--m1-pairing index` reaches the mask settings; every judged trigger's page shows each
    mask's share of the layer."""
    out, report = tmp_path / "r.jsonl", tmp_path / "report"
    args = ["scan", str(model_dirs["clean"]), "--out", str(out), "--report", str(report), "--quiet"]
    assert main([*args, "--min-asr", "1.0", "--m1-pairing", "index"]) == 0
    (record,) = read_results(out).values()
    for trigger in record["triggers"]:
        if trigger["asr"] < 1.0:
            assert trigger["verdict"] is None and "not refined" in trigger["note"]
        else:
            assert trigger["verdict"] is not None
            assert len(trigger["verdict"]["coverage"]) == 2 and len(trigger["verdict"]["degenerate"]) == 2
    assert any(t["verdict"] is not None for t in record["triggers"])
    page = next(report.glob("*/index.html")).read_text()
    assert "channels" in page and "M1 " in page
    options = options_from(build_parser().parse_args([*args, "--min-asr", "0.99", "--m1-pairing", "index"]))
    assert options.refine_min_asr == 0.99 and options.mask_config.m1_pairing == "index"
    with pytest.raises(ConfigError, match="refine_min_asr"):
        ScanOptions(refine_min_asr=0.0)


@pytest.mark.parametrize(("sides", "refine"), [("a_to_b", "exray_v2t"), ("b_to_a", "exray_t2v")])
def test_sides_selects_a_one_sided_exray_for_the_scan(model_dirs, tmp_path, sides, refine):
    """`exray scan --sides` runs the one-sided variant (EXP §4.1, baselines 7 and 8): its verdicts say so."""
    out = tmp_path / "r.jsonl"
    args = ["scan", str(model_dirs["planted"]), "--out", str(out), "--quiet", "--epochs", "60"]
    assert main([*args, "--sides", sides]) == 0
    (record,) = read_results(out).values()
    assert record["refine"] == refine
    verdicts = [t["verdict"] for t in record["triggers"] if t["verdict"] is not None]
    assert verdicts and all(v["sides"] == sides for v in verdicts)
    with pytest.raises(ConfigError, match="refine must be"):
        ScanOptions(refine="inner_l2")
