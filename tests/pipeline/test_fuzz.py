"""Issue 20 §7: seeded fuzzing of what exray reads — image files, example folders, results files and
command lines. Each generated case must end in one of the allowed outcome classes: a correct result, or
a clear one-line error of exray's own (:class:`~exray.errors.ExrayError`, naming the file where there is
one). An exception of any other type, a traceback, or a wrong result fails the case; the failing cases are
listed together, with their seeds, so that one run shows every class of failure."""

import io
import json
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from exray.cli import main
from exray.data.examples import load_examples
from exray.data.images import read_image
from exray.errors import ExrayError
from exray.pipeline import read_results

SEED = 20  # issue 20


def _attempt(failures: list, outcomes: dict, case: tuple, call, *args, names=None, **kwargs):
    """``call``'s result, or ``None`` once it is tallied as a clear refusal (an ExrayError on one line,
    naming ``names`` when given: ``outcomes["refused"]``) or as a failure (any other exception, an unclear
    error: appended to ``failures`` with ``case``)."""
    try:
        return call(*args, **kwargs)
    except ExrayError as err:
        outcomes["refused"] += 1
        message = str(err)
        if "\n" in message or (names is not None and str(names) not in message):
            failures.append((*case, f"unclear error: {message!r}"))
    except Exception as err:  # any other exception is the failure the fuzz looks for
        failures.append((*case, f"{type(err).__name__}: {err}"))
    return None


# ---- image files ----

#: PIL modes an example image may come in, and the formats that can hold each
MODES = {
    "1": ("png", "bmp", "tif"),
    "L": ("png", "jpg", "bmp", "gif", "tif"),
    "LA": ("png", "tif"),
    "P": ("png", "gif", "bmp", "tif"),
    "RGB": ("png", "jpg", "bmp", "gif", "tif", "webp"),
    "RGBA": ("png", "tif", "webp"),
    "CMYK": ("jpg", "tif"),
    "I;16": ("png", "tif"),
    "I": ("tif",),
    "F": ("tif",),
}
FORMATS = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF", "tif": "TIFF", "webp": "WEBP"}
DAMAGE = ("none", "none", "truncate", "flip", "garbage", "empty", "other-format", "text")


def _encode(rng: random.Random, mode: str, ext: str, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (size[1], size[0], 3), np.uint8)
    image = Image.fromarray(pixels).convert(mode if mode not in ("I;16", "I", "F") else "L")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image, np.uint16) * 257).astype(np.uint16))
    elif mode in ("I", "F"):
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=FORMATS[ext])
    return buffer.getvalue()


def _image_cases(count: int, seed: int = SEED):
    rng = random.Random(seed)
    for number in range(count):
        mode = rng.choice(list(MODES))
        ext = rng.choice(MODES[mode])
        size = (rng.choice([1, 2, 7, 16, 33]), rng.choice([1, 3, 16, 20]))
        data = _encode(rng, mode, ext, size)
        damage = rng.choice(DAMAGE)
        if damage == "truncate":
            data = data[: rng.randrange(len(data))]
        elif damage == "flip":
            data = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        elif damage == "garbage":
            data = rng.randbytes(rng.randint(1, 2000))
        elif damage == "empty":
            data = b""
        elif damage == "text":
            data = "class 3, example 0 — not an image\n".encode()
        if damage == "other-format":  # right bytes under another extension
            ext = rng.choice([e for e in FORMATS if e != ext])
        yield number, f"{mode}-{damage}", ext, size, data


def test_image_fuzz_reads_an_image_correctly_or_refuses_it_in_one_line(tmp_path):
    outcomes, failures = {"read": 0, "refused": 0}, []
    for number, label, ext, size, data in _image_cases(240):
        path = tmp_path / f"case-{number}.{ext}"
        path.write_bytes(data)
        image = _attempt(failures, outcomes, (number, label), read_image, path, names=path)
        if image is None:
            continue
        ok = (
            isinstance(image, torch.Tensor)
            and image.dtype == torch.float32
            and image.dim() == 3
            and image.shape[0] == 3
            and bool(image.isfinite().all())
            and float(image.min()) >= 0.0
            and float(image.max()) <= 1.0
        )
        if not ok:
            failures.append((number, label, f"wrong result {getattr(image, 'shape', image)}"))
        elif label.endswith("-none") and tuple(image.shape[1:]) != (size[1], size[0]):
            failures.append((number, label, f"an intact {size} image read as {tuple(image.shape)}"))
        outcomes["read"] += 1
    assert not failures, failures
    assert outcomes["read"] > 60 and outcomes["refused"] > 60, outcomes  # both classes are exercised


# ---- example folders ----


def _write_folder(rng: random.Random, folder) -> dict[int, int]:
    """A seeded example folder; returns {class: number of intact, decodable images written}."""
    folder.mkdir(parents=True)
    written: dict[int, int] = {}
    side = rng.choice([8, 16])
    for label in rng.sample(range(6), rng.randint(1, 4)):
        for k in range(rng.randint(1, 3)):
            name = f"class_{label}_example_{k}.png"
            shape = (side, side) if rng.random() < 0.95 else (side, side + 4)
            pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (*shape, 3), np.uint8)
            Image.fromarray(pixels).save(folder / name)
            written[label] = written.get(label, 0) + 1
    extra = rng.choice(["none", "none", "text", "broken-image", "subfolder", "bad-name", "sidecar"])
    if extra == "text":
        (folder / "README.txt").write_text("notes")
    elif extra == "broken-image":
        (folder / "class_1_example_9.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    elif extra == "subfolder":
        (folder / "class_2_example_7.png").mkdir()
    elif extra == "bad-name":
        (folder / "class_x_example_0.png").write_bytes(
            (folder / next(iter(sorted(p.name for p in folder.iterdir())))).read_bytes()
        )
    elif extra == "sidecar":
        (folder / "class_0_example_0.json").write_text("{not json")
    return written


def test_example_folder_fuzz_loads_every_image_or_refuses_the_folder_in_one_line(tmp_path):
    rng = random.Random(SEED + 1)
    outcomes, failures = {"loaded": 0, "refused": 0}, []
    for number in range(80):
        folder = tmp_path / f"case-{number}"
        written = _write_folder(rng, folder)
        size = rng.choice(
            [None] * 4 + [(8, 8), (16, 16)] * 2 + [(0, 0), (-1, 5), (4, 1000), (8.0, 8), (True, 8)]
        )
        loaded = _attempt(failures, outcomes, (number, size), load_examples, folder, size=size)
        if loaded is None:
            continue
        counts = {label: len(images) for label, images in loaded.items()}
        if counts != written:
            failures.append((number, size, f"loaded {counts}, written {written}"))
        for images in loaded.values():
            if images.dim() != 4 or images.shape[1] != 3 or not images.isfinite().all():
                failures.append((number, size, f"wrong tensor {tuple(images.shape)}"))
            elif size is not None and tuple(images.shape[2:]) != size:
                failures.append((number, size, f"asked for {size}, got {tuple(images.shape[2:])}"))
        outcomes["loaded"] += 1
    assert not failures, failures
    assert outcomes["loaded"] > 10 and outcomes["refused"] > 10, outcomes


# ---- results files ----

GOOD = {"model": "m", "probability": 0.25, "error": None}


def _results_lines(rng: random.Random) -> tuple[list[bytes], bool]:
    """Seeded results-file content; returns (lines, whether a reader must refuse it)."""
    lines, corrupt = [], False
    for k in range(rng.randint(0, 5)):
        kind = rng.choice(["good", "good", "good", "blank", "no-model", "list", "number", "bad-json",
                           "non-utf8", "model-not-str", "deep", "bom", "nan"])  # fmt: skip
        record = {**GOOD, "model": f"m{k}"}
        if kind == "good":
            lines.append(json.dumps(record).encode())
        elif kind == "blank":
            lines.append(b"   ")
        elif kind == "no-model":
            lines.append(b'{"probability": 0.5}')
        elif kind == "list":
            lines.append(b"[1, 2, 3]")
        elif kind == "number":
            lines.append(b"42")
        elif kind == "nan":
            lines.append(json.dumps({**record, "probability": float("nan")}).encode())
        elif kind == "bad-json":
            lines.append(b'{"model": "m", "probability": ')
            corrupt = True
        elif kind == "non-utf8":
            lines.append(json.dumps(record).encode()[:-2] + b'\xff"}')
            corrupt = True
        elif kind == "model-not-str":
            lines.append(b'{"model": 7}')
            corrupt = True
        elif kind == "deep":
            lines.append(b"[" * 100_000 + b"]" * 100_000)  # JSON, but too deep to parse: refused
            corrupt = True
        elif kind == "bom":
            lines.append(b"\xef\xbb\xbf" + json.dumps(record).encode())
            corrupt = True
    return lines, corrupt


def test_results_file_fuzz_keeps_every_complete_record_or_names_the_corrupt_line(tmp_path):
    rng = random.Random(SEED + 2)
    failures = []
    for number in range(150):
        lines, corrupt = _results_lines(rng)
        newline_at_end = rng.random() < 0.7
        path = tmp_path / f"results-{number}.jsonl"
        path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end and lines else b""))
        torn_last = bool(lines) and not newline_at_end
        try:
            records = read_results(path)
        except ExrayError as err:
            if not (corrupt or torn_last) or "line" not in str(err) or "\n" in str(err):
                failures.append((number, lines[:3], f"refused: {err}"))
            continue
        except Exception as err:
            failures.append((number, [x[:60] for x in lines], f"{type(err).__name__}: {str(err)[:200]}"))
            continue
        expected = set()
        for raw in lines:
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if isinstance(record, dict) and isinstance(record.get("model"), str):
                expected.add(record["model"])
        if corrupt and not torn_last:
            failures.append((number, lines[:3], "a corrupt file was read without an error"))
        elif not set(records) <= expected or (not torn_last and set(records) != expected):
            failures.append((number, lines[:3], f"records {sorted(records)}, expected {sorted(expected)}"))
    assert not failures, failures


# ---- command lines ----

HOSTILE_VALUES = ["nan", "inf", "-1", "0", "1e999", "", "abc", "0x10", "2.5", "99999999999999999999",
                  "epochs=nan", "epochs", "=", "block:99", "block:-99", "features.99", "x=1=2"]  # fmt: skip
#: per command: (fast settings that make an accepted value cheap to run, the flags fuzzed)
COMMANDS = {
    "scan": (
        ["--scanner-option", "epochs=2", "--scanner-option", "probe_epochs=1", "--epochs", "5", "--quiet"],
        ["--workers", "--epochs", "--patience", "--min-asr", "--max-model-seconds", "--max-model-memory",
         "--seed", "--scanner-option", "--out", "--report", "--calibration", "--layer", "--scanner-layer"],
    ),
    "diff": (
        ["--victim", "0", "--target", "1", "--epochs", "5"],
        ["--victim", "--target", "--epochs", "--patience", "--layer", "--stamped", "--seed"],
    ),
    "evaluate": (
        ["--methods", "inner_l2", "--scanner-option", "epochs=2", "--scanner-option", "probe_epochs=1",
         "--quiet"],
        ["--min-asr", "--calibration", "--groups", "--out", "--rules-from", "--layer", "--seed"],
    ),
}  # fmt: skip


def _argv_cases(target: dict[str, str], paths: list[str], count: int, seed: int = SEED + 3):
    """Command lines with one hostile value for one flag (the last occurrence of a flag wins)."""
    rng = random.Random(seed)
    for number in range(count):
        command = rng.choice(sorted(COMMANDS))
        fast, flags = COMMANDS[command]
        flag = rng.choice(flags)
        yield number, [command, target[command], *fast, flag, rng.choice(HOSTILE_VALUES + paths)]


def test_command_line_fuzz_never_shows_a_traceback_or_an_unforeseen_exception(
    tmp_path, model_dirs, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # default outputs (and --out values such as "nan") land here
    results = tmp_path / "results.jsonl"
    results.write_bytes(b'{"model": "x"}\n\xff\xfe not utf-8\n')
    stamped = model_dirs["clean"] / "clean-example-data"
    target = {"scan": str(model_dirs["clean"]), "diff": str(model_dirs["clean"]), "evaluate": str(tmp_path)}
    paths = [str(tmp_path / "missing"), str(results), "/dev/null", "/", str(tmp_path / "missing" / "x" / "y")]
    failures = []
    for number, argv in _argv_cases(target, paths, 70):
        if argv[0] == "diff" and "--stamped" not in argv:
            argv = [*argv, "--stamped", str(stamped)]
        if argv[0] == "evaluate":
            argv[1] = str(model_dirs["clean"].parent)
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse refusing a value: a usage line and exit 2
            code = stop.code
        except Exception as err:
            failures.append((number, argv, f"{type(err).__name__}: {err}"))
            continue
        err = capsys.readouterr().err
        if "Traceback" in err or "exray --debug" in err:  # an exception no check foresaw
            failures.append((number, argv, err.strip()[-300:]))
        elif code not in (0, 1, 2):
            failures.append((number, argv, f"exit {code}"))
    assert not failures, failures


# ---- the TrojAI entry point: a result file whatever the input ----


def _damage_weights(rng: random.Random, path, how: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    name = rng.choice(sorted(tensors))
    if how == "nan":
        tensors[name] = (
            tensors[name]
            .clone()
            .view(-1)
            .index_fill(0, torch.tensor([0]), float("nan"))
            .view(tensors[name].shape)
        )
    elif how == "float64":
        tensors[name] = tensors[name].double()
    elif how == "missing":
        del tensors[name]
    elif how == "extra":
        tensors["intruder.weight"] = torch.zeros(3)
    elif how == "reshaped":
        tensors[name] = torch.zeros(tensors[name].numel() + 1)
    if how in ("truncate", "garbage", "empty"):
        data = path.read_bytes()
        damaged = {"truncate": data[: rng.randrange(len(data))], "garbage": rng.randbytes(500), "empty": b""}
        path.write_bytes(damaged[how])
    else:
        save_file(tensors, path)


#: (damage, whether a result other than 0.5 is allowed): NaN weights, a missing model or a broken calibration
#: must never give a score; float64 weights are weights (cast to float32, then checked for overflow)
TROJAI_DAMAGE = (
    [(f"config-{f}", True) for f in ("architecture", "num_classes", "arch_kwargs", "input_size")]
    + [(f"weights-{h}", h in ("float64", "extra")) for h in
       ("nan", "float64", "missing", "extra", "reshaped", "truncate", "garbage", "empty")]
    + [(f"examples-{h}", True) for h in ("image", "empty", "one-class", "sizes", "nested")]
    + [(f"path-{h}", False) for h in ("no-model", "examples-missing", "examples-file", "pickle")]
    + [(f"calibration-{h}", False) for h in ("missing", "nan", "text", "list")]
    + [("intact", True)]
)  # fmt: skip


def _trojai_case(rng: random.Random, damage: str, base, tmp_path) -> list[str]:
    """The damaged copy of ``base`` for ``damage`` and the `exray trojai` command line that reads it."""
    import shutil

    directory = shutil.copytree(base, tmp_path / "model")
    examples, config = directory / "clean-example-data", directory / "config.json"
    model_path, calibration = directory / "model.safetensors", None
    kind, _, how = damage.partition("-")
    if kind == "config":
        data = json.loads(config.read_text())
        data[how] = rng.choice([None, -1, 10**9, float("nan"), "abc", [], ["x"], {}, [3, 10**6, 10**6]])
        config.write_text(json.dumps(data))
    elif kind == "weights":
        _damage_weights(rng, model_path, how)
    elif kind == "examples":
        images = sorted(examples.iterdir())
        if how == "image":
            rng.choice(images).write_bytes(rng.randbytes(300))
        elif how == "empty":
            for image in images:
                image.unlink()
        elif how == "one-class":
            for image in images:
                if not image.name.startswith("class_0_"):
                    image.unlink()
        elif how == "sizes":
            Image.new("RGB", (20, 12)).save(images[0])
        elif how == "nested":
            (examples / "class_0_more").mkdir()
    elif how == "no-model":
        model_path.unlink()
    elif how == "examples-missing":
        shutil.rmtree(examples)
    elif how == "examples-file":
        shutil.rmtree(examples)
        examples.write_text("not a folder")
    elif how == "pickle":  # a TrojAI model.pt, refused without --trust-pickle
        model_path.unlink()
        torch.save(torch.nn.Linear(2, 2), directory / "model.pt")
        model_path = directory / "model.pt"
    if kind == "calibration":
        calibration = tmp_path / "calibration.json"
        text = {"nan": '{"calibration": {"slope": 1, "threshold": NaN, "low": 0.1, "high": 0.9}}',
                "text": "calibration", "list": "[1, 2]"}.get(how)  # fmt: skip
        if text is not None:
            calibration.write_text(text)
    result = tmp_path / "out" / "r.txt"
    argv = ["trojai", "--model_filepath", str(model_path), "--result_filepath", str(result),
            "--scratch_dirpath", str(tmp_path / "scratch"), "--examples_dirpath", str(examples)]  # fmt: skip
    return argv + (["--calibration", str(calibration)] if calibration else [])


def test_trojai_fuzz_always_writes_a_probability_and_a_failure_is_0_5_with_exit_2(
    model_dirs, tmp_path, capsys, monkeypatch
):
    """Issue 20 §4: the NIST harness scores a missing result file as a failed container, so `exray trojai`
    writes one on every input: the probability (exit 0), or 0.5 with the reason in the scratch record and
    one line on stderr (exit 2). Damage that leaves no trustworthy model (NaN weights, no model, a pickle
    without --trust-pickle, a broken calibration) must fail, never score."""
    import exray.cli.trojai as trojai
    from exray.differencing import MaskConfig
    from exray.pipeline import scan

    def cheap_scan(model, examples, settings, **kwargs):  # the real pipeline at a test's budget
        options = {"epochs": 2, "probe_epochs": 1}
        budget = replace(settings, scanner_options=options, mask_config=MaskConfig(epochs=5))
        return scan(model, examples, budget, **kwargs)

    monkeypatch.setattr(trojai, "scan", cheap_scan)
    rng, failures, scored = random.Random(SEED + 4), [], 0
    for number, (damage, may_score) in enumerate(TROJAI_DAMAGE):
        case_dir = tmp_path / f"case-{number}"
        argv = _trojai_case(rng, damage, model_dirs["planted"], case_dir)
        try:
            code = main(argv)
        except BaseException as err:  # anything escaping main breaks the contract
            failures.append((damage, f"{type(err).__name__}: {err}"))
            continue
        err = capsys.readouterr().err
        result = case_dir / "out" / "r.txt"
        if not result.is_file():
            failures.append((damage, f"no result file (exit {code})"))
            continue
        value = float(result.read_text())
        record = json.loads((case_dir / "scratch" / "exray-result.json").read_text())
        if code == 2:
            if value != 0.5 or not record["error"] or "Traceback" in err or err.count("\n") != 1:
                failures.append((damage, value, record.get("error"), err))
        elif code != 0 or not may_score or not 0.0 <= value <= 1.0 or record["error"] is not None:
            failures.append((damage, f"exit {code}", value, record.get("error")))
        else:
            scored += 1
    assert not failures, failures
    assert scored >= 2, scored  # the intact model (and harmless damage) is scanned for real


# ---- zoo and study spec files ----

SPEC_VALUES = [None, True, -1, 0, 10**9, 1e300, float("nan"), float("inf"), "abc", "", [], [1], [5, 3], {},
               {"x": 1}, [[[]]], "ü" * 1000, 2**70]  # fmt: skip


def _mutate(rng: random.Random, data):
    """``data`` with one seeded leaf, list or mapping replaced by a hostile value (or a key added)."""
    if isinstance(data, dict) and data and rng.random() < 0.8:
        key = rng.choice(sorted(data))
        return {**data, key: _mutate(rng, data[key])}
    if isinstance(data, list) and data and rng.random() < 0.8:
        index = rng.randrange(len(data))
        return [*data[:index], _mutate(rng, data[index]), *data[index + 1 :]]
    if isinstance(data, dict) and rng.random() < 0.3:
        return {**data, "unexpected_key": rng.choice(SPEC_VALUES)}
    return rng.choice(SPEC_VALUES)


RAW_SPECS = [
    "a: &x [1, 2]\nb: *x\n",  # an alias: refused outright (billion laughs)
    "[" * 5_000 + "]" * 5_000,  # nested too deeply
    "name: [unclosed",
    "- just\n- a list\n",
    "42",
    "",
]


def test_spec_fuzz_parses_a_valid_spec_or_refuses_it_in_one_line(tmp_path):
    """Zoo specs (`exray zoo build`) and study specs (`exray sdrm`) are files users and others write: every
    mutation of the shipped specs, and every malformed file, is a valid spec or one ConfigError line."""
    import yaml

    from exray.errors import ConfigError
    from exray.studies.sdrm.spec import load_spec as load_study
    from exray.zoo.draw import designs
    from exray.zoo.spec import load_spec as load_zoo

    root = Path(__file__).parents[2]
    bases = {load_zoo: root / "zoos" / "r2.yaml", load_study: root / "studies" / "sdrm-small.yaml"}
    rng, failures, outcomes = random.Random(SEED + 5), [], {"refused": 0, "parsed": 0}
    cases = [(load, yaml.safe_load(path.read_text()), None) for load, path in bases.items()]
    cases = cases + [case for case in cases for _ in range(60)]  # each intact spec first: it must parse
    cases += [(load, None, raw) for load in bases for raw in RAW_SPECS]
    for number, (load, base, raw) in enumerate(cases):
        path = tmp_path / f"case-{number}.yaml"
        if raw is None:  # NaN, Infinity and huge integers as YAML writes them
            data = base if number < len(bases) else _mutate(rng, base)
            path.write_text(yaml.safe_dump(data, allow_unicode=True))
        else:
            path.write_text(raw)
        spec = _attempt(failures, outcomes, (number, load.__module__, raw and raw[:20]), load, path)
        if spec is not None:
            outcomes["parsed"] += 1
            if load is load_zoo:  # a parsed zoo spec must also lay out its models (sizes were bounded)
                _attempt(failures, outcomes, (number, "designs"), designs, spec)
    for special in ("fifo", "dev-zero", "directory", "not-utf8", "huge"):
        path = tmp_path / f"special-{special}.yaml"
        if special == "fifo":
            os.mkfifo(path)
        elif special == "dev-zero":
            path.symlink_to("/dev/zero")
        elif special == "directory":
            path.mkdir()
        elif special == "not-utf8":
            path.write_bytes(b"name: \xff\xfe\n")
        else:
            path.write_bytes(b"# " + b"x" * (2 * 2**20) + b"\n")
        for load in bases:
            try:
                load(path)
                failures.append((special, "accepted"))
            except ConfigError as err:
                if "\n" in str(err) or str(path) not in str(err):
                    failures.append((special, f"unclear error: {err}"))
    assert not failures, failures
    assert outcomes["parsed"] >= len(bases) and outcomes["refused"] > 60, outcomes  # both classes exercised
