"""Issue 20 §7: seeded fuzzing of what exray reads — image files, example folders, results files and
command lines. Each generated case must end in one of the allowed outcome classes: a correct result, or
a clear one-line error of exray's own (:class:`~exray.errors.ExrayError`, naming the file where there is
one). An exception of any other type, a traceback, or a wrong result fails the case; the failing cases are
listed together, with their seeds, so that one run shows every class of failure."""

import io
import json
import random

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
