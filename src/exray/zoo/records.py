"""What a zoo build records (design §4): one :class:`ModelRecord` per model as a row of ``METADATA.csv``, the
:class:`BuildSummary` of a build, and ``zoo.json`` (the canonical spec, the exray version and the summary),
both rewritten atomically after every model (:func:`write_state`); :func:`read_metadata` reads the rows."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.errors import InputError, ModelLoadError
from exray.files import MAX_JSON_BYTES, read_text
from exray.version import __version__
from exray.zoo.draw import ModelDesign
from exray.zoo.spec import ZooSpec

METADATA_FILE = "METADATA.csv"
ZOO_FILE = "zoo.json"
STATUS_OK, STATUS_FAILED, STATUS_ERROR = "ok", "failed_quality", "error"
METADATA_COLUMNS = (
    "name",
    "status",
    "poisoned",
    "architecture",
    "arch_kwargs",
    "num_classes",
    "trigger_type",
    "source_classes",
    "target_class",
    "fraction",
    "clean_accuracy",
    "attack_success_rate",
    "layer_channels",
    "layer_map",
    "adversarial",
    "seed",
    "attempts",
    "seconds",
    "error",
)


@dataclass(frozen=True)
class ModelRecord:
    """One row of METADATA.csv. Multi-trigger fields join triggers with ``;`` and classes with spaces."""

    name: str
    status: str
    poisoned: bool
    architecture: str
    arch_kwargs: dict[str, Any]
    num_classes: int | None = None
    trigger_type: str = ""
    source_classes: str = ""
    target_class: str = ""
    fraction: str = ""
    clean_accuracy: float | None = None
    attack_success_rate: float | None = None
    layer_channels: int | None = None  # at EX-RAY's default layer (config.json "exray_layer")
    layer_map: str = ""  # its feature-map size, "H×W"
    adversarial: str = ""
    seed: int | None = None
    attempts: int = 0
    seconds: float | None = None
    error: str = ""

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> ModelRecord:
        triggers = config.get("triggers", [])
        adv = config.get("training", {}).get("adversarial")
        quality = config.get("quality", {})
        return cls(
            name=name,
            status=STATUS_OK if quality.get("passed") else STATUS_FAILED,
            poisoned=bool(config.get("poisoned")),
            architecture=str(config.get("architecture")),
            arch_kwargs=dict(config.get("arch_kwargs", {})),
            num_classes=config.get("num_classes"),
            trigger_type=";".join(str(t["type"]) for t in triggers),
            source_classes=";".join(" ".join(str(c) for c in t["source_classes"]) for t in triggers),
            target_class=";".join(str(t["target_class"]) for t in triggers),
            fraction=";".join(f"{t['fraction']:.4f}" for t in triggers),
            clean_accuracy=config.get("clean_accuracy"),
            attack_success_rate=config.get("attack_success_rate"),
            adversarial=(
                "" if not adv else f"{adv['method']} eps={adv['eps'] * 255:g}/255 ratio={adv['ratio']:g}"
            ),
            layer_channels=(config.get("exray_layer") or {}).get("channels"),
            layer_map="×".join(str(d) for d in (config.get("exray_layer") or {}).get("map", [])),
            seed=config.get("seed"),
            attempts=len(quality.get("attempts", [])),
            seconds=config.get("build_seconds"),
        )

    @classmethod
    def failure(cls, design: ModelDesign, error: str, seconds: float) -> ModelRecord:
        return cls(
            name=design.name,
            status=STATUS_ERROR,
            poisoned=design.poisoned,
            architecture=design.architecture.name,
            arch_kwargs=dict(design.architecture.kwargs),
            trigger_type=design.trigger_type or "",
            seconds=seconds,
            error=error,
        )

    def row(self) -> dict[str, str]:
        def fmt(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, float):
                return f"{value:.4f}"
            if isinstance(value, dict):
                return json.dumps(value, sort_keys=True)
            return str(value)

        return {column: fmt(getattr(self, column)) for column in METADATA_COLUMNS}


@dataclass(frozen=True)
class BuildSummary:
    """What a build did: every model's record, which were built now / reused / rebuilt, and wall time."""

    out: Path
    spec_name: str
    records: tuple[ModelRecord, ...]
    built: tuple[str, ...]
    reused: tuple[str, ...]
    rebuilt: tuple[str, ...]
    seconds: float
    tracebacks: dict[str, str] = field(default_factory=dict)

    @property
    def failed_quality(self) -> tuple[ModelRecord, ...]:
        return tuple(r for r in self.records if r.status == STATUS_FAILED)

    @property
    def errors(self) -> tuple[ModelRecord, ...]:
        return tuple(r for r in self.records if r.status == STATUS_ERROR)

    @property
    def complete(self) -> bool:
        """Every model of the spec has a finished directory (none errored)."""
        return not self.errors

    @property
    def ok(self) -> bool:
        """Complete, and every model meets the quality bar."""
        return self.complete and not self.failed_quality

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "spec": self.spec_name,
            "models": len(self.records),
            "built": list(self.built),
            "reused": list(self.reused),
            "rebuilt": list(self.rebuilt),
            "failed_quality": [r.name for r in self.failed_quality],
            "errors": {r.name: r.error for r in self.errors},
            "ok": self.ok,
            "seconds": self.seconds,
        }


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_state(
    spec: ZooSpec,
    out: Path,
    all_designs: list[ModelDesign],
    records: dict[str, ModelRecord],
    tracebacks: dict[str, str],
    *,
    complete: bool,
    summary: BuildSummary | None = None,
) -> None:
    """Rewrite METADATA.csv (rows of the models with a record, in index order) and zoo.json."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for design in all_designs:
        if design.name in records:
            writer.writerow(records[design.name].row())
    atomic_write(out / METADATA_FILE, buffer.getvalue())
    state = {
        "spec": spec.to_dict(),
        "spec_digest": spec.digest(),
        "exray_version": __version__,
        "models": len(all_designs),
        "complete": complete,
        "ok": summary.ok if summary is not None else False,
        "summary": summary.to_dict() if summary is not None else None,
        "tracebacks": tracebacks,
    }
    atomic_write(out / ZOO_FILE, json.dumps(state, indent=2) + "\n")


def read_metadata(out: str | Path) -> list[dict[str, str]]:
    """The rows of a zoo's METADATA.csv."""
    path = Path(out) / METADATA_FILE
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist: not a built zoo")
    try:
        text = read_text(path, "zoo metadata", limit=MAX_JSON_BYTES)
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (InputError, csv.Error) as err:
        raise ModelLoadError(f"{path} is not a METADATA.csv: {err}") from None
    for number, row in enumerate(rows, start=2):
        name = row.get("name")
        if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ModelLoadError(f"{path}, line {number}: 'name' must name a model directory of the zoo")
    return rows
