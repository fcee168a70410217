"""Issue 20: hostile and malformed inputs give a clear error or a recorded per-model error, and no finished
result is lost — a dead worker, a results file cut or corrupted, NaN weights, a failing TrojAI container."""

import json
import os
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from exray import utils
from exray.cli import main
from exray.differencing import TriggerCase, compare_triggers
from exray.errors import ExrayError, InputError, ModelLoadError
from exray.models.io import load_model
from exray.pipeline import ScanOptions, read_results, scan_many
from exray.pipeline.batch import WORKER_DIED, _run

from .conftest import colour_model, examples

FAST = ScanOptions(scanner_options={"epochs": 10, "probe_epochs": 2})


# ---- no lost work: a dead worker costs only its model ----


def dying_task(path: str, options: ScanOptions) -> dict:
    """A stand-in for scan_model_dir (module level, so spawned workers can import it): the model named
    "die" kills its worker as ``kill -9`` or the OOM killer would; the others take a moment."""
    if path == "die":
        os._exit(9)
    time.sleep(0.2)
    return {"model": path, "probability": 0.5, "error": None}


def test_a_dead_worker_costs_only_its_model_and_the_batch_goes_on():
    paths = ["a", "die", "b"]
    records = {r["model"]: r for r in _run(paths, ScanOptions(), workers=2, task=dying_task)}
    assert sorted(records) == sorted(paths)  # every model recorded once
    assert records["die"]["probability"] is None and records["die"]["error"] == WORKER_DIED
    assert all(records[p]["error"] is None and records[p]["probability"] == 0.5 for p in "ab")


def always_dying_task(path: str, options: ScanOptions) -> dict:
    os._exit(9)


def test_a_machine_where_no_worker_runs_stops_the_batch_instead_of_blaming_the_model(monkeypatch):
    """A lone model runs in a worker too (else this test's own process would die), and when a fresh worker
    cannot run even an empty task the batch stops — no error record blames the model."""
    import exray.pipeline.batch as batch

    def no_worker_runs(context, budget):  # what check_workers_run finds when every worker dies at start
        raise ExrayError("worker processes die even on an empty task")

    monkeypatch.setattr(batch, "check_workers_run", no_worker_runs)
    with pytest.raises(ExrayError, match="empty task"):
        list(_run(["a"], ScanOptions(), workers=2, task=always_dying_task))


# ---- the results file: a complete record is never lost, a corrupt file is a clear error ----


def test_a_complete_last_record_without_its_newline_is_kept_and_not_rescanned(model_dirs, tmp_path):
    out = tmp_path / "results.jsonl"
    list(scan_many([model_dirs["clean"]], FAST, out=out, progress=False))
    out.write_bytes(out.read_bytes().rstrip(b"\n"))  # e.g. a copy or an editor dropped the newline
    assert set(read_results(out)) == {str(model_dirs["clean"])}
    second = list(scan_many([model_dirs["clean"], model_dirs["planted"]], FAST, out=out, progress=False))
    assert [r["model"] for r in second] == [str(model_dirs["planted"])]
    assert set(read_results(out)) == {str(model_dirs["clean"]), str(model_dirs["planted"])}
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("line", "reason"), [(b'{"model": "x", "probability": 0.\xff}', "not UTF-8"), (b"{garbage}", "not JSON")]
)
def test_a_corrupt_line_is_a_clear_error_naming_it_and_the_file_is_kept(
    model_dirs, tmp_path, capsys, line, reason
):
    out = tmp_path / "results.jsonl"
    out.write_bytes(b'{"model": "m1", "probability": 0.1}\n' + line + b'\n{"model": "m3"}\n')
    before = out.read_bytes()
    with pytest.raises(InputError, match=rf"line 2 is {reason}"):
        read_results(out)
    assert main(["scan", str(model_dirs["clean"]), "--out", str(out), "--quiet"]) == 2
    assert "line 2" in capsys.readouterr().err and out.read_bytes() == before


def test_results_file_paths_are_checked_and_missing_parents_created(model_dirs, tmp_path, capsys):
    assert main(["scan", str(model_dirs["clean"]), "--out", str(tmp_path), "--quiet"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    out = tmp_path / "new" / "dir" / "r.jsonl"
    assert main(["scan", str(model_dirs["clean"]), "--out", str(out), "--quiet", "--epochs", "10"]) == 0
    assert set(read_results(out)) == {str(model_dirs["clean"])}


def test_more_workers_than_cores_are_capped_with_a_warning(model_dirs, monkeypatch):
    import exray.pipeline.batch as batch

    used = []
    monkeypatch.setattr(batch, "_run", lambda paths, options, workers, **_: used.append(workers) or iter(()))
    cores = utils.available_cores()  # as exray sees it (tests/conftest.py: at least 2)
    with pytest.warns(UserWarning, match=f"using {cores}"):
        list(scan_many([model_dirs["clean"]], FAST, workers=cores + 100, progress=False))
    assert used == [cores]


# ---- weights: NaN, Inf or non-float tensors never give a score ----


def _with_weights(model_dirs, tmp_path, change):
    directory = shutil.copytree(model_dirs["clean"], tmp_path / "model")
    state = load_file(str(directory / "model.safetensors"))
    change(state)
    save_file(state, str(directory / "model.safetensors"))
    return directory


def test_non_finite_weights_are_an_error_never_a_score(model_dirs, tmp_path):
    def poison(state):
        name = next(k for k, v in state.items() if v.is_floating_point() and v.numel())
        state[name].view(-1)[0] = float("nan")

    directory = _with_weights(model_dirs, tmp_path, poison)
    with pytest.raises(ModelLoadError, match="NaN or Inf"):
        load_model(directory)
    (record,) = scan_many([directory], FAST, progress=False)
    assert record["probability"] is None and "NaN or Inf" in record["error"]


def test_weights_stored_as_integers_are_refused(model_dirs, tmp_path):
    def to_int(state):
        name = next(k for k, v in state.items() if v.is_floating_point() and v.numel())
        state[name] = state[name].to(torch.int32)

    with pytest.raises(ModelLoadError, match="stored as torch.int32"):
        load_model(_with_weights(model_dirs, tmp_path, to_int))


def test_a_model_with_nan_logits_is_refused_by_the_api():
    model = colour_model(planted=False)
    with torch.no_grad():
        next(p for p in model.parameters() if p.is_floating_point()).view(-1)[0] = float("nan")
    data = examples()
    case = TriggerCase(data[0], data[1], data[1], 0, 1)
    with pytest.raises(InputError, match="not finite"):
        compare_triggers(model, [case], layer="detectors")
    from exray.pipeline import scan

    with pytest.raises(InputError, match="not finite"):
        scan(model, data, scanner_options={"epochs": 2})


# ---- the TrojAI container always writes its result file ----


def test_trojai_writes_a_result_file_on_any_failure(model_dirs, tmp_path, capsys):
    directory = shutil.copytree(model_dirs["clean"], tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    config["num_classes"] = "abc"  # reaches int() — not an exray error
    (directory / "config.json").write_text(json.dumps(config))
    result, scratch = tmp_path / "out" / "result.txt", tmp_path / "scratch"
    args = ["trojai", "--model_filepath", str(directory / "model.safetensors"), "--result_filepath",
            str(result), "--scratch_dirpath", str(scratch), "--examples_dirpath",
            str(directory / "clean-example-data")]  # fmt: skip
    assert main(args) == 2
    assert result.read_text().strip() == "0.5"
    record = json.loads((scratch / "exray-result.json").read_text())
    assert record["probability"] is None and "abc" in record["error"]
    err = capsys.readouterr().err
    assert "wrote 0.5" in err and "Traceback" not in err


# ---- a seeded fuzz of config.json: a clear ModelLoadError or a correct load, nothing else ----

HOSTILE_VALUES = [
    None, True, -1, 0, 1, 3, 2**63, 10**9, 1e6, float("nan"), float("inf"), -0.5, "abc", "", "10",
    [], ["x"], [3, 16], [3, 16, 16], [3, 0, 16], [3, 10**6, 10**6], {}, {"width": 1e6}, {"depth": 3},
    [10**9, 4], [4, 4, 4, 4], "mlp", "transformer",
]  # fmt: skip
FIELDS = ("architecture", "num_classes", "arch_kwargs", "input_size", "width", "channels", "head", "format")


def _fuzz_cases(count: int, seed: int = 20) -> list[dict]:
    """Every field set to every hostile value once, then ``count`` seeded random 2–3-field mutations."""
    import random

    rng = random.Random(seed)
    cases = [{field: value} for field in FIELDS for value in HOSTILE_VALUES]
    for _ in range(count):
        cases.append({f: rng.choice(HOSTILE_VALUES) for f in rng.sample(FIELDS, rng.randint(2, 3))})
    return cases


@pytest.fixture(scope="module")
def small_cnn_dir(tmp_path_factory):
    from exray.models import build_model
    from exray.models.io import save_model

    directory = tmp_path_factory.mktemp("cnn") / "model"
    save_model(build_model("cnn", 3, width=0.25), directory, input_size=(3, 16, 16))
    return directory


def test_config_fuzz_gives_a_clear_error_or_a_correct_load(small_cnn_dir, tmp_path):
    base = json.loads((small_cnn_dir / "config.json").read_text())
    outcomes = {"error": 0, "loaded": 0}
    for number, case in enumerate(_fuzz_cases(200)):
        config = json.loads(json.dumps(base))
        for field, value in case.items():
            if field in ("width", "channels", "head"):
                if isinstance(config.get("arch_kwargs"), dict):
                    config["arch_kwargs"][field] = value
            else:
                config[field] = value
        directory = tmp_path / f"case-{number}"
        directory.mkdir()
        (directory / "model.safetensors").symlink_to(small_cnn_dir / "model.safetensors")
        (directory / "config.json").write_text(json.dumps(config))  # NaN and Infinity as Python writes them
        try:
            model = load_model(directory)
        except ModelLoadError as err:
            message = str(err)
        else:  # loaded: it must be the saved model, whole and finite
            assert model(torch.rand(2, 3, 16, 16)).isfinite().all(), case
            outcomes["loaded"] += 1
            continue
        assert "\n" not in message and str(directory) in message, (case, message)  # one line, names the file
        outcomes["error"] += 1
    assert outcomes["error"] > 150 and outcomes["loaded"] > 0, outcomes


@pytest.mark.parametrize(
    ("architecture", "kwargs", "message"),
    [
        ("densenet", {"blocks": [100_000_000]}, "exceeds"),
        ("densenet", {"blocks": [4000, 4000]}, "dense layers"),
        ("cnn", {"channels": [8] * 5_000}, "entries"),
        ("cnn", {"channels": [[[[[[8]]]]]]}, "nests deeper"),
    ],
)
def test_a_small_config_cannot_make_the_loader_build_millions_of_modules(
    small_cnn_dir, tmp_path, architecture, kwargs, message
):
    directory = shutil.copytree(small_cnn_dir, tmp_path / "model")
    config = {"architecture": architecture, "num_classes": 3, "arch_kwargs": kwargs}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):  # refused by the checks, before any module is built
        load_model(directory)


@pytest.mark.parametrize(
    "special", ["directory", "fifo", "dev-zero", "deep-json", "huge-json"], ids=lambda s: f"config-{s}"
)
def test_a_config_that_is_not_a_small_regular_json_file_is_refused_without_reading_it(
    small_cnn_dir, tmp_path, special
):
    directory = shutil.copytree(small_cnn_dir, tmp_path / "model")
    config = directory / "config.json"
    config.unlink()
    if special == "directory":
        config.mkdir()
    elif special == "fifo":
        os.mkfifo(config)  # opening it would block forever
    elif special == "dev-zero":
        config.symlink_to("/dev/zero")
    elif special == "deep-json":
        config.write_text("[" * 100_000 + "]" * 100_000)
    else:
        config.write_bytes(b" " * (17 * 2**20))
    with pytest.raises(ModelLoadError, match="config"):
        load_model(directory)


def test_a_fifo_in_place_of_the_weights_or_an_example_is_refused(model_dirs, tmp_path):
    from exray.data.examples import load_examples

    directory = shutil.copytree(model_dirs["clean"], tmp_path / "model")
    (directory / "model.safetensors").unlink()
    os.mkfifo(directory / "model.safetensors")
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_model(directory)
    image = next((directory / "clean-example-data").glob("*.png"))
    image.unlink()
    os.mkfifo(image)
    with pytest.raises(InputError, match="not a regular file"):
        load_examples(directory)


# ---- images: decompression bombs, oversized headers, 16-bit PNGs, odd names ----


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header declares width × height (decoding it would allocate width·height·3 bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


@pytest.mark.parametrize("side", [10_000, 30_000])
def test_an_oversized_image_is_refused_from_its_header(tmp_path, side):
    from exray.data.images import read_image

    _png_header_only(tmp_path / "big.png", side, side)
    with pytest.raises(InputError, match="pixels|readable"):
        read_image(tmp_path / "big.png")


def test_examples_holding_too_many_pixels_in_all_are_refused(model_dirs, monkeypatch):
    import exray.data.examples as examples_module
    import exray.data.images as images_module
    from exray.data.examples import load_examples

    monkeypatch.setattr(images_module, "MAX_TOTAL_PIXELS", 16 * 16 * 5)  # 5 of a class's ten 16×16 images
    with pytest.raises(InputError, match="more than 1,280 pixels"):
        load_examples(model_dirs["clean"])
    monkeypatch.setattr(images_module, "MAX_TOTAL_PIXELS", 16 * 16 * 10)
    monkeypatch.setattr(examples_module, "MAX_TOTAL_PIXELS", 16 * 16 * 25)  # one class fits, not three
    with pytest.raises(InputError, match="example images of"):
        load_examples(model_dirs["clean"])


def test_a_16_bit_png_is_scaled_exactly(tmp_path):
    import numpy as np
    from PIL import Image

    from exray.data.images import read_image

    grey = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 2, 2)
    assert torch.allclose(image[0], torch.from_numpy(grey / 65535.0).float()) and (image[0] == image[2]).all()


@pytest.mark.parametrize("name", ["xxclass_2_example_0.png", "class_\u0663_example_0.png"])
def test_a_name_that_only_resembles_the_class_pattern_names_no_class(model_dirs, tmp_path, name):
    from exray.data.examples import list_examples

    folder = tmp_path / "examples"
    folder.mkdir()
    shutil.copy(next((model_dirs["clean"] / "clean-example-data").glob("*.png")), folder / name)
    with pytest.raises(InputError, match="cannot tell the class"):
        list_examples(folder)


# ---- settings: non-finite numbers are refused ----


def test_non_finite_settings_are_refused(tmp_path):
    from exray.differencing import MaskConfig
    from exray.errors import ConfigError
    from exray.pipeline import Calibration

    hostile = [{"lr": float("inf")}, {"init_logit": float("nan")}, {"lr": True}, {"min_improvement": "x"}]
    hostile += [{"epochs": True}, {"epochs": 10**23}, {"patience": 10**23}, {"batch_size": True}]
    for bad in hostile:
        with pytest.raises(ConfigError):
            MaskConfig(**bad)
    with pytest.raises(ConfigError, match="finite"):
        Calibration(threshold=float("nan"))
    path = tmp_path / "c.json"
    path.write_text('{"calibration": {"slope": 200, "threshold": "nan", "low": 0.09, "high": 0.86}}')
    with pytest.raises(ConfigError):
        Calibration.load(path)


# ---- the command line: one line per error, the traceback only on request ----


def test_an_unexpected_error_is_one_line_and_its_traceback_needs_debug(model_dirs, monkeypatch, capsys):
    import exray.cli.diff as diff_command

    def bug(args):
        raise RuntimeError("size mismatch for a:\n\tcopying a param\n\tfrom checkpoint")

    monkeypatch.setattr(diff_command, "run", bug)
    argv = ["diff", str(model_dirs["clean"]), "--victim", "0", "--target", "1", "--stamped", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: size mismatch for a: copying a param" in err
    assert "exray --debug diff" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="size mismatch"):
        main(["--debug", *argv])


# ---- resource ceilings: a model over its time or memory budget costs only its own result ----


def over_time_task(path: str, options: ScanOptions) -> dict:
    """ "slow" runs for a minute in Python (a long scan); "stuck" sleeps where no signal is handled (a long
    native call: only a kill stops it); the others finish at once."""
    if path == "slow":
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.05)
    if path == "stuck":
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(120)
    return {"model": path, "probability": 0.5, "score": 1.0, "error": None}


def greedy_task(path: str, options: ScanOptions) -> dict:
    """Allocates 4 GiB for "greedy", 64 MiB for the others; errors recorded as scan_model_dir does."""
    size = 2**32 if path == "greedy" else 2**26
    try:
        torch.ones(size, dtype=torch.uint8)
    except Exception as err:
        return {"model": path, "probability": None, "score": None, "error": f"{type(err).__name__}: {err}"}
    return {"model": path, "probability": 0.5, "score": 1.0, "error": None}


def test_models_over_their_time_budget_are_stopped_or_killed_and_the_batch_goes_on(monkeypatch):
    import exray.pipeline.budget as budget_module
    from exray.pipeline import ModelBudget

    # the budget counts from the start each worker reports, so a slow spawn under load is not charged
    monkeypatch.setattr(budget_module, "HARD_KILL_GRACE", 15.0)
    paths = ["slow", "stuck", "a"]
    records = {r["model"]: r for r in _run(paths, ScanOptions(), 2, over_time_task, ModelBudget(seconds=1.0))}
    assert sorted(records) == sorted(paths)
    assert records["slow"]["probability"] is None and records["stuck"]["probability"] is None
    assert "time budget of 1 s" in records["slow"]["error"]
    assert "killed" not in records["slow"]["error"]  # stopped by its own timer, between two operations
    assert "time budget of 1 s" in records["stuck"]["error"] and "killed" in records["stuck"]["error"]
    assert records["a"]["error"] is None and records["a"]["probability"] == 0.5


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the memory budget needs Linux")
def test_a_model_over_its_memory_budget_is_recorded_and_the_others_run_within_it():
    from exray.pipeline import ModelBudget

    budget = ModelBudget(memory_gb=1.0)
    records = {r["model"]: r for r in _run(["greedy", "a"], ScanOptions(), 2, greedy_task, budget)}
    assert records["greedy"]["probability"] is None
    assert "memory budget of 1 GB" in records["greedy"]["error"]
    assert records["a"]["error"] is None  # 64 MiB fit; the limit is per model, lifted between models


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "10", 1e308, 10**23])
def test_a_budget_out_of_range_is_a_clear_error(bad):
    from exray.errors import ConfigError
    from exray.pipeline import ModelBudget

    with pytest.raises(ConfigError, match="budget"):
        ModelBudget(seconds=bad)


def test_exray_scan_max_model_seconds_stops_a_real_scan_and_records_why(model_dirs, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    code = main(
        ["scan", str(model_dirs["clean"]), "--out", str(out), "--max-model-seconds", "0.01", "--quiet"]
    )
    assert code == 1  # every model failed
    record = read_results(out)[str(model_dirs["clean"])]
    assert record["probability"] is None and "time budget of 0.01 s" in record["error"]
    assert "time budget" in capsys.readouterr().out
    assert main(["scan", str(model_dirs["clean"]), "--out", str(out), "--max-model-seconds", "0"]) == 2


def test_the_hard_deadline_counts_from_the_workers_start_and_only_for_models_in_flight():
    """A model that finished long ago must not make the batch loop spin with a zero timeout; a worker's slow
    start-up (spawn, import torch on a loaded machine) is not charged to its model's budget."""
    import multiprocessing
    from concurrent.futures import Future

    import exray.pipeline.batch as batch
    import exray.pipeline.budget as budget_module
    from exray.pipeline import ModelBudget

    budget = ModelBudget(seconds=10.0)
    hard = 10.0 + budget_module.HARD_KILL_GRACE
    finished, running = Future(), Future()
    clock = batch._Clock()
    now = time.monotonic()
    clock.submitted = {finished: now - 3600, running: now}
    clock.started = {finished: now - 3600}
    # not started yet: the loop polls each second for the worker's report, and nobody is overdue
    assert clock.time_left({running: "b"}, budget) == pytest.approx(1.0)
    assert clock.overdue({running: "b"}, budget) == []
    # the report arrives 100 s after submission (a slow start-up): the deadline counts from it
    starts = multiprocessing.get_context("spawn").Queue()
    starts.put(("b", now - 60.0))  # a report from before this submission (a killed worker's): ignored
    time.sleep(0.2)
    clock.update({running: "b"}, starts)
    assert running not in clock.started
    starts.put(("b", now + 100.0))
    time.sleep(0.2)  # the queue's feeder thread
    clock.update({running: "b"}, starts)
    assert clock.started[running] == now + 100.0
    assert clock.time_left({running: "b"}, budget) == pytest.approx(100.0 + hard, abs=1.0)
    assert clock.time_left({running: "b"}, ModelBudget()) is None
    # a worker that never reports is charged from submission + STARTUP_ALLOWANCE
    silent = Future()
    clock.submitted[silent] = now - batch.STARTUP_ALLOWANCE - hard - 1
    assert clock.overdue({silent: "c", running: "b"}, budget) == ["c"]


# ---- the second audit (issue 20): what the model-folder checks did not cover ----


def test_logits_that_overflow_refuse_the_scan_instead_of_naming_class_0():
    """A model whose logits reach float32's overflow on some images (a stamped one) has no prediction
    there: every argmax of a row of equal infinities would name class 0 and give ASR 1.0."""
    from exray.models.runtime import MAX_LOGIT, predict_labels, predict_logits

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    with torch.no_grad():
        model[1].weight.fill_(1e37)
        model[1].bias.zero_()
    images = torch.rand(5, 3, 4, 4)
    assert not bool((model(images).abs() <= MAX_LOGIT).all())
    with pytest.raises(InputError, match="not finite"):
        predict_logits(model, images)
    assert predict_labels(model, images).shape == (5,)  # training may measure a diverged model


@pytest.mark.parametrize(
    "text",
    [
        "fifo",
        '{"calibration": {"slope": 200, "threshold": 0.9}}',  # incomplete: no silent defaults
        '{"calibration": {"slope": "200", "threshold": 0.9, "low": 0.1, "high": 0.8}}',
        '{"calibration": {"slope": 200, "threshold": true, "low": 0.1, "high": 0.8}}',
        '{"calibration": {"slope": 200, "threshold": 5, "low": 0.1, "high": 0.8}}',
        "[1, 2]",
        '{"calibration": {"slope": 1' + "0" * 5000 + ', "threshold": 0.9, "low": 0.1, "high": 0.8}}',
    ],
)
def test_a_calibration_file_must_be_a_regular_complete_file_of_numbers(tmp_path, text):
    from exray.errors import ConfigError
    from exray.pipeline import Calibration

    path = tmp_path / "calibration.json"
    if text == "fifo":
        os.mkfifo(path)  # reading it would block forever
    else:
        path.write_text(text)
    with pytest.raises(ConfigError, match="calibration"):
        Calibration.load(path)


@pytest.mark.parametrize("value", ["[1", "{", "*x", "!!python/object:os.system ls", "[" * 3000])
def test_a_malformed_scanner_option_is_one_line(model_dirs, tmp_path, capsys, value):
    args = ["scan", str(model_dirs["clean"]), "--out", str(tmp_path / "r.jsonl"), "--quiet"]
    assert main([*args, "--scanner-option", f"epochs={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--scanner-option epochs" in err and "--debug" not in err


def test_scanner_options_must_be_finite_and_bounded():
    from exray.errors import ConfigError
    from exray.scanners import get_scanner

    for options in ({"mask_lr": float("inf")}, {"size_weight": float("inf")}, {"epochs": 10**12}):
        with pytest.raises(ConfigError):
            get_scanner("abs", **options)


def test_api_entry_points_check_seeds_layers_triggers_and_pixel_range():
    from exray.errors import ConfigError
    from exray.pipeline import scan

    model, images = colour_model(False), examples(4)
    for bad in ({"seed": 1.5}, {"seed": "x"}, {"seed": -1}, {"layer": ""}):
        with pytest.raises(ConfigError):
            scan(model, images, refine=None, **bad)
    with pytest.raises(InputError, match="FoundTrigger"):
        scan(model, images, triggers="x")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        scan(model, {c: x * 5 for c, x in images.items()}, refine=None)
    with pytest.raises(InputError, match="TriggerCase"):
        compare_triggers(model, ["x"])
    with pytest.raises(InputError, match="kind"):
        TriggerCase(images[0], images[1], images[1], 0, 1, kind="x")
    for path in (None, b"bytes"):
        with pytest.raises(ModelLoadError, match="str or Path"):
            load_model(path)


def test_thread_and_worker_counts_are_checked_by_the_parser(capsys):
    for argv in (["sdrm", "study", "any.yaml", "--threads", "-1"],
                 ["zoo", "build", "any.yaml", "--out", "x", "--workers", "0"]):  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and "[1, 1024]" in capsys.readouterr().err


def _zoo_with(tmp_path, model_dirs, metadata: str | None = None, target=None):
    zoo = tmp_path / "zoo"
    for name in ("clean", "planted"):
        shutil.copytree(model_dirs[name], zoo / model_dirs[name].name)
    if target is not None:
        config_path = zoo / model_dirs["planted"].name / "config.json"
        config = json.loads(config_path.read_text())
        config["triggers"] = [{"type": "patch", "target_class": target}]
        config_path.write_text(json.dumps(config))
    if metadata is not None:
        (zoo / "METADATA.csv").write_text(metadata)
    return zoo


@pytest.mark.parametrize("name", ["../outside", "/etc", "", "a\\b"])
def test_a_metadata_name_must_stay_inside_the_zoo(tmp_path, model_dirs, name):
    from exray.evaluation.truth import read_truth

    zoo = _zoo_with(tmp_path, model_dirs, metadata=f"name,status\n{name},ok\n")
    with pytest.raises(ModelLoadError, match="line 2"):
        read_truth(zoo)


@pytest.mark.parametrize("target", [1.7, True, -1, "1", float("inf")])
def test_a_ground_truth_trigger_with_a_non_class_target_skips_that_model_with_the_reason(
    tmp_path, model_dirs, target
):
    from exray.evaluation.truth import read_truth

    models, skipped = read_truth(_zoo_with(tmp_path, model_dirs, target=target))
    assert [m.name for m in models] == [model_dirs["clean"].name]
    assert "class index" in skipped[model_dirs["planted"].name]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("training", "lr", float("nan")),
        ("quality", "min_clean_accuracy", float("nan")),  # a NaN bar would pass every model
        ("triggers", "fraction", [float("nan"), float("nan")]),
        ("models", "clean", 10**9),
        (None, "seed", 2**200),
        (None, "name", "a\0b"),
    ],
)
def test_a_zoo_spec_refuses_nan_and_unbounded_values(section, key, value):
    from pathlib import Path

    import yaml

    from exray.errors import ConfigError
    from exray.zoo.spec import parse_spec

    data = yaml.safe_load((Path(__file__).parents[2] / "zoos" / "tiny.yaml").read_text())
    (data if section is None else data.setdefault(section, {}))[key] = value
    with pytest.raises(ConfigError, match=key):
        parse_spec(data)


def test_an_output_path_that_is_a_fifo_is_refused_before_any_work(model_dirs, tmp_path, capsys):
    """Writing to a FIFO blocks until someone reads it: `exray diff` used to run its whole analysis and
    then hang on the write. Every command that writes a file checks its path first."""
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    clean = model_dirs["clean"]
    stamped = clean / "clean-example-data"
    diff = [
        "diff",
        str(clean),
        "--victim",
        "0",
        "--target",
        "1",
        "--stamped",
        str(stamped),
        "--out",
        str(fifo),
    ]
    assert main([*diff, "--quiet"]) == 2
    assert main(["calibrate", str(tmp_path / "any.jsonl"), "--out", str(fifo)]) == 2
    assert main(["scan", str(clean), "--out", str(fifo), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("not a regular file") == 3 and "Traceback" not in err
    trojai = ["trojai", "--model_filepath", str(clean), "--result_filepath", str(fifo), "--scratch_dirpath",
              str(tmp_path / "scratch"), "--examples_dirpath", str(stamped)]  # fmt: skip
    assert main(trojai) == 2  # the harness's result path is unusable: say so, do not hang
    assert "cannot write" in capsys.readouterr().err
