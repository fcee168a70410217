"""`exray trojai` as NIST's harness calls it from round 10 on (issue 18 §3): `infer` and `configure` with the
metaparameters, their JSON schema and the learned-parameters directory; the round 1-4 call stays as it was
(tests/pipeline/test_batch.py)."""

import json
import shutil

import pytest

from exray.cli import main
from exray.harness import CALIBRATION_FILE, METAPARAMETERS, SCHEMA
from exray.pipeline import Calibration


def _metaparameters(tmp_path, **changes):
    meta = json.loads(METAPARAMETERS.read_text()) | {"scanner_epochs": 10, "mask_epochs": 100} | changes
    path = tmp_path / "metaparameters.json"
    path.write_text(json.dumps(meta))
    return path


def _infer(model_dir, tmp_path, meta, learned, before=()):
    result = tmp_path / "result.txt"
    args = ["trojai", *before, "infer", "--model_filepath", str(model_dir / "model.safetensors"),
            "--result_filepath", str(result), "--scratch_dirpath", str(tmp_path / "scratch"),
            "--examples_dirpath", str(model_dir / "clean-example-data"),
            "--round_training_dataset_dirpath", str(tmp_path), "--metaparameters_filepath", str(meta),
            "--schema_filepath", str(SCHEMA), "--learned_parameters_dirpath", str(learned),
            "--scale_parameters_filepath", str(tmp_path / "scale.npy")]  # fmt: skip
    return main(args), result


def test_the_shipped_metaparameters_validate_against_the_shipped_schema():
    from exray.harness import load_metaparameters

    meta = load_metaparameters(METAPARAMETERS, SCHEMA)
    options = meta.scan_options(Calibration())
    assert (options.scanner, options.layer, options.policy) == ("abs", "block:-2", "official")
    assert options.scanner_options == {"epochs": 40} and options.mask_config.precision == "fp32"


def test_infer_scans_with_the_metaparameters(model_dirs, tmp_path):
    learned = tmp_path / "learned_parameters"
    learned.mkdir()
    code, result = _infer(model_dirs["planted"], tmp_path, _metaparameters(tmp_path), learned)
    assert code == 0
    probability = float(result.read_text())
    record = json.loads((tmp_path / "scratch" / "exray-result.json").read_text())
    assert record["probability"] == pytest.approx(probability, abs=1e-6)
    assert record["scanner"] == "abs" and record["error"] is None


def test_infer_with_invalid_metaparameters_writes_one_half_and_says_why(model_dirs, tmp_path, capsys):
    meta = _metaparameters(tmp_path, scanner="xyz")
    code, result = _infer(model_dirs["planted"], tmp_path, meta, tmp_path)
    assert code == 2 and result.read_text().strip() == "0.5"
    assert "scanner" in capsys.readouterr().err


def test_infer_refuses_the_round_1_to_4_scanner_and_seed_flags(model_dirs, tmp_path, capsys):
    """infer takes the scanner and the seed from the metaparameters; the old flags would be ignored."""
    meta = _metaparameters(tmp_path)
    for flags in (["--scanner", "nc"], ["--seed", "3"]):
        code, result = _infer(model_dirs["planted"], tmp_path, meta, tmp_path, before=flags)
        assert code == 2 and result.read_text().strip() == "0.5"
        assert flags[0] in capsys.readouterr().err


def test_configure_fits_the_calibration_that_infer_then_uses(model_dirs, tmp_path):
    models = tmp_path / "models"
    for name in ("clean", "planted"):
        shutil.copytree(model_dirs[name], models / model_dirs[name].name)
    learned, meta = tmp_path / "learned_parameters", _metaparameters(tmp_path)
    args = ["trojai", "configure", "--scratch_dirpath", str(tmp_path / "scratch"),
            "--configure_models_dirpath", str(models), "--metaparameters_filepath", str(meta),
            "--schema_filepath", str(SCHEMA), "--learned_parameters_dirpath", str(learned),
            "--automatic_configuration", "--scale_parameters_filepath", str(tmp_path / "scale.npy"),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((learned / CALIBRATION_FILE).read_text())
    assert saved["provenance"]["models"] == 2 and saved["provenance"]["trojaned"] == 1
    assert json.loads((learned / "metaparameters.json").read_text()) == json.loads(meta.read_text())
    calibration = Calibration.load(learned / CALIBRATION_FILE)
    code, result = _infer(model_dirs["planted"], tmp_path, meta, learned)
    record = json.loads((tmp_path / "scratch" / "exray-result.json").read_text())
    assert code == 0
    assert float(result.read_text()) == pytest.approx(calibration.probability(record["score"]), abs=1e-6)


def test_the_round_1_to_4_call_needs_its_four_flags(tmp_path, capsys):
    assert main(["trojai", "--result_filepath", str(tmp_path / "r.txt")]) == 2
    assert "--model_filepath" in capsys.readouterr().err
