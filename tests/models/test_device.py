"""``device=`` / ``--device`` (issue 18 §4): one resolution rule, a clear error for a GPU that is not there,
and every command that runs models hands the flag on (a flag that were ignored would fail here)."""

import contextlib
from pathlib import Path

import pytest
import torch

from exray.cli import main
from exray.errors import ConfigError
from exray.evaluation import EvaluationConfig
from exray.models.runtime import native_bf16, predict_logits, resolve_bf16, resolve_device
from exray.pipeline import ScanOptions

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the refusal on a machine without GPU")
ROOT = Path(__file__).resolve().parents[2]
TROJAI_ARGV = ["trojai", "--model_filepath", "m/model.pt", "--result_filepath", "r", "--scratch_dirpath"]
TROJAI_ARGV += ["s", "--examples_dirpath", "e"]


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(" CUDA:1 ") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")


def test_named_devices_and_refusals(monkeypatch):
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    for bad in ("tpu", "banana", "mps", "", 3, ["cpu"]):
        with pytest.raises(ConfigError):
            resolve_device(bad)


@NO_GPU
def test_settings_asking_for_a_missing_gpu_fail_before_any_model():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        ScanOptions(device="cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        EvaluationConfig(device="cuda")
    assert EvaluationConfig(device="cpu").scan_settings() == EvaluationConfig().scan_settings()
    assert "device" not in EvaluationConfig().scan_settings()  # CPU cache keys are unchanged


def test_gpu_results_are_cached_apart(monkeypatch):
    cpu = EvaluationConfig(device="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = EvaluationConfig(device="cuda")
    assert gpu.scan_settings() == {**cpu.scan_settings(), "device": "cuda"}
    assert gpu.method_settings("exray", "k")["device"] == "cuda"
    assert "device" not in cpu.method_settings("exray", "k")


def test_predictions_come_back_on_the_images_device():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images = torch.rand(5, 3, 2, 2)
    logits = predict_logits(model, images, batch_size=2)
    assert logits.device == images.device and logits.shape == (5, 3)
    assert torch.allclose(logits, model(images))


class Stop(Exception):
    """Raised by the stand-ins below once they have seen the device."""


def _capture(monkeypatch, target: str, seen: dict):
    def stand_in(*args, **kwargs):
        seen["device"] = kwargs.get("device")
        raise Stop

    monkeypatch.setattr(target, stand_in)


@pytest.mark.parametrize(
    ("target", "argv"),
    [
        ("exray.cli.diff.load_model", ["diff", "m", "--victim", "0", "--target", "1", "--stamped", "s"]),
        ("exray.cli.zoo.build_zoo", ["zoo", "build", str(ROOT / "zoos" / "tiny.yaml"), "--out", "o"]),
        (
            "exray.cli.sdrm.run_study",
            ["sdrm", "study", str(ROOT / "studies" / "sdrm-tiny.yaml"), "--out", "o"],
        ),
        ("exray.evaluation.demo.cached_build", ["demo"]),
        (
            "exray.pipeline.loading.load_model",
            TROJAI_ARGV,
        ),
        ("exray.pipeline.loading.load_model", ["scan", "m", "--quiet"]),
    ],
)
def test_every_command_that_runs_models_hands_on_its_device(monkeypatch, tmp_path, target, argv):
    monkeypatch.chdir(tmp_path)
    for sub in ("m", "s", "e"):
        (tmp_path / sub).mkdir()
    seen: dict = {}
    _capture(monkeypatch, target, seen)
    with contextlib.suppress(Stop):
        main([*argv, "--device", "cpu"])
    assert seen == {"device": "cpu"}


def test_evaluate_hands_on_its_device(tmp_path):
    from exray.cli import build_parser
    from exray.cli.evaluate import config_from

    args = build_parser().parse_args(["evaluate", str(tmp_path), "--device", "cpu"])
    assert config_from(args).device == "cpu"
    args = build_parser().parse_args(["evaluate", str(tmp_path)])
    assert config_from(args).device == "auto"


@NO_GPU
def test_a_scan_asked_for_a_missing_gpu_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["scan", str(tmp_path), "--device", "cuda", "--out", str(out), "--quiet"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err and not out.exists()


def test_trojai_infer_keeps_flags_given_before_the_mode():
    """argparse applies a subparser's defaults over the parent's values: --device, --trust-pickle and
    --calibration given before `infer` must survive it."""
    from exray.cli import build_parser

    harness = ["--round_training_dataset_dirpath", "x", "--metaparameters_filepath", "a"]
    harness += ["--schema_filepath", "b", "--learned_parameters_dirpath", "c"]
    files = [
        "--model_filepath",
        "m",
        "--result_filepath",
        "r",
        "--scratch_dirpath",
        "s",
        "--examples_dirpath",
        "e",
    ]
    before = build_parser().parse_args(
        ["trojai", "--device", "cpu", "--trust-pickle", "--calibration", "k.json", "infer", *files, *harness]
    )
    assert (before.device, before.trust_pickle, str(before.calibration)) == ("cpu", True, "k.json")
    after = build_parser().parse_args(["trojai", "infer", "--device", "cpu", *files, *harness])
    assert (after.device, after.trust_pickle, after.calibration) == ("cpu", False, None)


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the CPU's flags from /proc/cpuinfo")
def test_native_bf16_matches_the_cpus_flags() -> None:
    """bf16 is native on a CPU with AMX tiles or AVX-512 BF16 (the kernel's flag names), on no other."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    expected = bool({"amx_tile", "avx512_bf16"} & flags)
    assert native_bf16(torch.device("cpu")) is expected
    assert resolve_bf16("auto", torch.device("cpu")) is expected
    assert native_bf16(torch.device("meta")) is False
    assert resolve_bf16(True, torch.device("cpu")) is True
    assert resolve_bf16(False, torch.device("cpu")) is False
    with pytest.raises(ConfigError, match="true, false or 'auto'"):
        resolve_bf16("yes", torch.device("cpu"))
