"""Reading untrusted files (issue 20): regular files only, sizes checked before anything is read.

Model directories come from third parties. A FIFO or device in place of a file would hang or never end
(``/dev/zero``), a huge or deeply nested JSON file would exhaust memory or the stack; these helpers turn
each into an :class:`~exray.errors.InputError` that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from exray.errors import InputError

#: Largest JSON file read (config.json, sidecar labels, calibration, ground truth): 16 MiB.
MAX_JSON_BYTES = 16 * 2**20
#: Largest results file read (JSON lines of `exray scan`, evaluation.json): 1 GiB, ~10^5 models' records.
MAX_RESULTS_BYTES = 2**30
#: Largest zoo or study spec read: 1 MiB.
MAX_SPEC_BYTES = 2**20


def check_regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path if it is a regular file (symlinks followed), else :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a regular file (a directory, FIFO or device)")
    return path


def check_writable(path: str | Path, what: str = "output file") -> Path:
    """``path`` as a Path if a file may be written there: it does not exist yet or is a regular file. A
    FIFO would block the write for ever, a directory or device cannot take it: InputError, before any work."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise InputError(f"{what} {path} exists and is not a regular file (a directory, FIFO or device)")
    return path


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refused before reading if larger than ``limit``."""
    path = check_regular_file(path, what)
    size = path.stat().st_size
    if size > limit:
        raise InputError(f"{what} {path} is {size:,} bytes; the limit is {limit:,}")
    return path.read_bytes()


def read_text(path: str | Path, what: str = "file", limit: int = MAX_JSON_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; any problem is an InputError."""
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not UTF-8 text") from None


def read_json(path: str | Path, what: str = "JSON file", limit: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON of a regular file of at most ``limit`` bytes; any problem is an InputError."""
    text = read_text(path, what, limit)
    try:
        return json.loads(text)
    except ValueError as err:  # not JSON, or an integer of more than 4,300 digits
        raise InputError(f"{what} {path} is not valid JSON: {' '.join(str(err).split())[:200]}") from None
    except RecursionError:
        raise InputError(f"{what} {path} is nested too deeply to be a valid file") from None


class _PlainYamlLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` lets a few hundred bytes stand for billions of nodes ("billion
    laughs"); spec files never need one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def read_document(path: str | Path, what: str = "spec", limit: int = MAX_SPEC_BYTES) -> Any:
    """A JSON (``.json``) or YAML (any other suffix) document, parsed without aliases; any problem is an
    InputError naming the file."""
    if Path(path).suffix.lower() == ".json":
        return read_json(path, what, limit)
    return parse_yaml(read_text(path, what, limit), f"{what} {path}")


def parse_yaml(text: str, what: str) -> Any:
    """``text`` parsed as YAML without aliases or Python tags; any problem is an InputError naming
    ``what``."""
    try:
        return yaml.load(text, Loader=_PlainYamlLoader)
    except (yaml.YAMLError, ValueError) as err:
        raise InputError(f"{what} is not valid YAML: {' '.join(str(err).split())[:200]}") from None
    except RecursionError:
        raise InputError(f"{what} is nested too deeply to be valid") from None


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """The records of a JSON-lines results file by model.

    A torn last line (a crash while writing it) is ignored; a complete last record without its newline is
    kept. Any other line that is not UTF-8 JSON is a corrupt file: :class:`InputError` naming the line
    (the file is left as it is)."""
    records: dict[str, dict[str, Any]] = {}
    path = Path(path)
    if not path.exists():
        return records
    lines = read_bytes(path, MAX_RESULTS_BYTES, "results file").split(b"\n")
    torn = len(lines) - 1 if lines[-1] else None  # a last line without its newline may be torn
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError included
            if number == torn:
                continue  # torn by a crash while it was written; the model is scanned again
            reason = {
                UnicodeDecodeError: "is not UTF-8",
                RecursionError: "is JSON nested too deeply",
            }.get(type(err), "is not JSON")
            raise InputError(
                f"results file {path}, line {number + 1} {reason}: the file is corrupt; move it away or "
                "delete that line (its model is then scanned again)"
            ) from None
        if isinstance(record, dict) and "model" in record:
            if not isinstance(record["model"], str):
                raise InputError(f"results file {path}, line {number + 1}: its model is not a path string")
            records[record["model"]] = record
    return records
