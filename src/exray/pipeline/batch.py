"""Scanning many model directories: one JSON line per model, parallel, resumable, failure-isolated.

Design §4 "Results": every line has the stable keys ``model`` (the directory as given) and
``probability`` (null for a model that failed, with its ``error``). A results file that already holds a
model is not scanned again, so an interrupted batch resumes where it stopped. The failure of one model
(corrupt weights, wrong input size, too few examples, a pickled model without opt-in, or a bug) is
recorded and the batch goes on.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from exray.data.examples import load_examples
from exray.differencing import MaskConfig
from exray.errors import ConfigError, ExrayError
from exray.models.io import input_image_size, load_model
from exray.pipeline.calibration import Calibration
from exray.pipeline.scan import check_min_asr, check_victim_rule, scan
from exray.scanners import get_scanner
from exray.utils import set_thread_budget, versions


@dataclass(frozen=True)
class ScanOptions:
    """Everything a worker needs to scan one model directory (picklable, validated)."""

    scanner: str = "abs"
    refine: str | None = "exray"
    seed: int = 0
    layer: str | None = None
    scanner_layer: str | None = None
    policy: str = "official"
    victims: str = "found"
    refine_min_asr: float = 0.9
    mask_config: MaskConfig = field(default_factory=MaskConfig)
    calibration: Calibration = field(default_factory=Calibration)
    scanner_options: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    report_dir: str | None = None

    def __post_init__(self) -> None:
        if self.refine not in (None, "exray"):
            raise ConfigError(f"refine must be None or 'exray', got {self.refine!r}")
        check_victim_rule(self.victims)
        check_min_asr(self.refine_min_asr)
        get_scanner(self.scanner, **self.scanner_options)  # bad scanner settings fail before any model


def scan_model_dir(path: str | Path, options: ScanOptions, *, progress: bool = False) -> dict[str, Any]:
    """Scan one model directory; never raises for a problem with that model — it is in ``"error"``."""
    start = time.perf_counter()
    try:
        model = load_model(path, trust_pickle=options.trust_pickle)
        examples = load_examples(path, size=input_image_size(model))
        result = scan(
            model,
            examples,
            scanner=options.scanner,
            refine=options.refine,
            seed=options.seed,
            layer=options.layer,
            scanner_layer=options.scanner_layer,
            policy=options.policy,
            victims=options.victims,
            refine_min_asr=options.refine_min_asr,
            mask_config=options.mask_config,
            calibration=options.calibration,
            scanner_options=options.scanner_options,
            name=str(path),
            progress=progress,
        )
        if options.report_dir is not None:
            from exray.report import write_model_report

            write_model_report(result, examples, options.report_dir)
        record = result.to_dict()
    except Exception as err:  # isolate every failure of this model, expected or not
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, ExrayError):
            message += " | " + traceback.format_exc(limit=3).replace("\n", " ")
        record = {
            "model": str(path),
            "probability": None,
            "score": None,
            "triggers": [],
            "scanner": options.scanner,
            "refine": options.refine,
            "seed": options.seed,
            "error": message,
            "versions": versions(),
        }
    record.setdefault("timings", {})["total"] = time.perf_counter() - start
    return record


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """The records of a JSON-lines results file by model (a torn last line from a crash is ignored)."""
    records: dict[str, dict[str, Any]] = {}
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "model" in record:
            records[record["model"]] = record
    return records


def scan_many(
    paths: Sequence[str | Path],
    options: ScanOptions,
    *,
    out: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Scan every directory in ``paths``, yielding (and appending to ``out``) one record per model.

    Models already in ``out`` are skipped. ``workers`` processes run in parallel, each with an equal share
    of the machine's cores as its thread budget.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    done = read_results(out) if out is not None else {}
    todo = [str(p) for p in paths if str(p) not in done]
    if out is not None:
        _drop_torn_line(Path(out))
    sink = open(out, "a") if out is not None else None  # noqa: SIM115  (kept open while records arrive)
    bar = tqdm(total=len(todo), desc="models", unit="model", disable=not progress)
    try:
        for record in _run(todo, options, workers):
            if sink is not None:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
            bar.update()
            yield record
    finally:
        bar.close()
        if sink is not None:
            sink.close()


def _drop_torn_line(path: Path) -> None:
    """Cut a partial last line (a crash while writing it) so that appended records start on a new line."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def _run(paths: list[str], options: ScanOptions, workers: int) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(paths) <= 1:
        for path in paths:
            yield scan_model_dir(path, options)
        return
    budget = max(1, (os.cpu_count() or 2) // workers)
    context = get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=set_thread_budget, initargs=(budget,)
    ) as pool:
        futures = [pool.submit(scan_model_dir, path, options) for path in paths]
        for future in as_completed(futures):
            yield future.result()
