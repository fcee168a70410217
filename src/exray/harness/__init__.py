"""The NIST TrojAI harness of round 10 onwards (usnistgov/trojai-example), issue 18 §3.

The harness calls the container's entry point in two modes, each with a metaparameters file that must
validate against the container's JSON schema:

* ``infer``: scan one model and write P(trojaned) — exray scans with the metaparameters' settings and the
  calibration ``configure`` left in the learned-parameters directory (the default calibration if none);
* ``configure``: learn from a directory of labelled models — exray scans each (``id-*/`` with its
  ``ground_truth.csv``), fits its score → probability calibration (:func:`exray.pipeline.fit`) and writes it
  with the metaparameters it used into the learned-parameters directory. That fit is all exray learns, so
  ``--automatic_configuration`` (a search over metaparameters in NIST's example) has nothing more to do.

The container holds ``/metaparameters.json``, ``/metaparameters_schema.json`` and ``/learned_parameters/``
(``exray.def``); :data:`METAPARAMETERS` and :data:`SCHEMA` are the shipped defaults.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from exray.differencing import MaskConfig
from exray.errors import ConfigError, InputError
from exray.files import read_json
from exray.models.io import GROUND_TRUTH_FILE, PICKLE_FILE, WEIGHTS_FILE
from exray.pipeline import Calibration, ScanOptions, fit, scan_many
from exray.pipeline.labelled import scanned_scores
from exray.utils import versions

HERE = Path(__file__).resolve().parent
METAPARAMETERS = HERE / "metaparameters.json"
SCHEMA = HERE / "metaparameters_schema.json"
#: The calibration ``configure`` writes into the learned-parameters directory and ``infer`` reads.
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class Metaparameters:
    """The validated metaparameters (see ``metaparameters_schema.json`` for each one's meaning)."""

    scanner: str
    scanner_epochs: int
    layer: str
    policy: str
    mask_epochs: int
    mask_precision: str
    mask_patience: int
    min_asr: float | None
    seed: int

    def scan_options(self, calibration: Calibration, *, trust_pickle: bool = False) -> ScanOptions:
        """The batch-scan settings these metaparameters stand for."""
        return ScanOptions(
            scanner=self.scanner,
            seed=self.seed,
            layer=self.layer,
            policy=self.policy,
            refine_min_asr=self.min_asr,
            mask_config=MaskConfig(
                epochs=self.mask_epochs,
                precision=self.mask_precision,
                patience=self.mask_patience or None,
            ),
            calibration=calibration,
            scanner_options={"epochs": self.scanner_epochs},
            trust_pickle=trust_pickle,
        )


def load_metaparameters(path: str | Path, schema_path: str | Path) -> Metaparameters:
    """The metaparameters of ``path``, validated against the JSON schema of ``schema_path`` (``ConfigError``
    naming the offending field otherwise)."""
    data = read_json(path, "metaparameters")
    schema = read_json(schema_path, "metaparameters schema")
    try:
        jsonschema.validate(instance=data, schema=schema)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "the top level"
        raise ConfigError(f"{path}: {where}: {err.message}") from None
    except jsonschema.SchemaError as err:
        raise ConfigError(f"{schema_path} is not a valid JSON schema: {err.message}") from None
    try:
        return Metaparameters(**{k: data[k] for k in Metaparameters.__dataclass_fields__})
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{path} does not give exray's metaparameters ({err}); see {SCHEMA.name}") from None


def learned_calibration(learned_dir: str | Path) -> Calibration:
    """The calibration ``configure`` fitted into ``learned_dir``, or the default one if there is none."""
    path = Path(learned_dir) / CALIBRATION_FILE
    return Calibration.load(path) if path.is_file() else Calibration()


def labelled_models(models_dir: str | Path) -> list[Path]:
    """The model directories under ``models_dir`` that hold a model and a ground truth, sorted."""
    models = [
        d
        for d in sorted(Path(models_dir).iterdir())
        if d.is_dir()
        and (d / GROUND_TRUTH_FILE).is_file()
        and ((d / WEIGHTS_FILE).is_file() or (d / PICKLE_FILE).is_file())
    ]
    if not models:
        raise InputError(f"{models_dir} holds no model directory with a model and a {GROUND_TRUTH_FILE}")
    return models


def configure(
    models_dir: str | Path,
    scratch_dir: str | Path,
    meta: Metaparameters,
    metaparameters_path: str | Path,
    learned_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """Scan the labelled models of ``models_dir`` with ``meta`` on ``device``, fit the calibration on their
    scores and write it (with a copy of the metaparameters) into ``learned_dir``; return a summary."""
    models = labelled_models(models_dir)
    scratch = Path(scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    results = scratch / "configure-results.jsonl"
    options = dataclasses.replace(meta.scan_options(Calibration()), device=device)
    records = list(scan_many(models, options, out=results, workers=workers, progress=progress))
    scores, labels = scanned_scores(results)
    if len(set(labels)) < 2:
        raise InputError(
            f"{models_dir}: configure needs clean and trojaned models, got labels {sorted(set(labels))}"
        )
    calibration = fit(scores, labels)
    learned = Path(learned_dir)
    learned.mkdir(parents=True, exist_ok=True)
    provenance = {
        "fitted_on": str(models_dir),
        "models": len(labels),
        "trojaned": sum(labels),
        "failed": sum(1 for r in records if r.get("error")),
        "metaparameters": json.loads(Path(metaparameters_path).read_text()),
        "versions": versions(),
    }
    calibration.save(learned / CALIBRATION_FILE, provenance)
    copy = learned / "metaparameters.json"
    if not (copy.exists() and copy.samefile(metaparameters_path)):  # the harness may pass that very file
        shutil.copyfile(metaparameters_path, copy)
    return {"calibration": str(learned / CALIBRATION_FILE), **provenance}


__all__ = [
    "CALIBRATION_FILE",
    "METAPARAMETERS",
    "SCHEMA",
    "Metaparameters",
    "configure",
    "labelled_models",
    "learned_calibration",
    "load_metaparameters",
]
