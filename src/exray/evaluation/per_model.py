"""One model of an evaluation (:func:`exray.evaluation.evaluate_zoo`, steps 1-2): its scan and every
method's scores on its triggers, each read from or written to its stage cache — in the evaluating process or
in a worker process (:func:`evaluate_job`)."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from exray.errors import ExrayError
from exray.evaluation.cache import StageCache, model_digest, settings_key
from exray.evaluation.config import EvaluationConfig
from exray.evaluation.outcome import ModelEvaluation
from exray.evaluation.truth import ModelTruth
from exray.pipeline import scan
from exray.pipeline.loading import load_scan_inputs
from exray.refinement import (
    ASR_TOLERANCE,
    RandomForestMethod,
    RefinementMethod,
    TriggerScore,
    select_cases,
)
from exray.scanners import FoundTrigger
from exray.utils import versions


@dataclass
class EvaluationRun:
    """Everything the stages share while one evaluation runs."""

    config: EvaluationConfig
    scan_cache: StageCache
    method_caches: dict[str, StageCache]
    methods: dict[str, RefinementMethod]
    progress: Any  # what shows which model and stage runs (a tqdm bar, or NoProgress in a worker)
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def _failure(err: Exception) -> str:
    message = f"{type(err).__name__}: {err}"
    if not isinstance(err, ExrayError):
        message += " | " + traceback.format_exc(limit=3).replace("\n", " ")
    return message


def _load(path: Path, trust_pickle: bool, device: str):
    return load_scan_inputs(path, trust_pickle=trust_pickle, device=device)


def _measure(method: RefinementMethod, model, cases, config: EvaluationConfig) -> list[TriggerScore]:
    """Per-model scores; for the random forest only its features (it is trained on the population)."""
    if isinstance(method, RandomForestMethod):
        rows = method.features(model, cases, layer=config.layer)
        return [TriggerScore(None, {"features": row}, note="features for the forest") for row in rows]
    return method.score(model, cases, layer=config.layer, seed=config.seed)


def evaluate_model(
    truth: ModelTruth, run: EvaluationRun, compute: bool = True
) -> tuple[ModelEvaluation, dict[str, dict[str, Any]]] | None:
    """Scan (or reuse the cached scan of) one model and run (or reuse) every method on its triggers.
    ``compute=False``: only from the caches — ``None`` if anything is missing (a record judged at a lower
    gate with no trigger in between is still re-saved at this gate, as in a computing run)."""
    config = run.config
    evaluation = ModelEvaluation(truth, None)
    records: dict[str, dict[str, Any]] = {}
    weights = model_digest(truth.path)
    scan_record = run.scan_cache.load(truth.name)
    if scan_record is not None and scan_record.get("model_digest") != weights:
        scan_record = None  # scanned on other weights (the zoo was rebuilt in place)
    loaded = None

    def loaded_model():
        nonlocal loaded
        if loaded is None:
            loaded = _load(truth.path, config.trust_pickle, config.device)
        return loaded

    if scan_record is None:
        if not compute:
            return None
        run.progress.set_postfix_str(f"{truth.name}: {config.scanner}")
        start = time.perf_counter()
        try:
            model, examples = loaded_model()
            result = scan(
                model,
                examples,
                scanner=config.scanner,
                refine=None,
                seed=config.seed,
                calibration=config.calibration,
                scanner_options=config.scanner_options,
                name=truth.name,
            )
            record = {"triggers": [t.found.to_dict() for t in result.triggers], "timings": result.timings}
            record["error"] = None
        except Exception as err:  # one model's failure is recorded; the evaluation goes on
            record = {"triggers": None, "timings": {}, "error": _failure(err)}
        record["seconds"] = time.perf_counter() - start
        scan_record = run.scan_cache.save(
            truth.name,
            {**record, "model_digest": weights, "versions": versions(), "threads": torch.get_num_threads()},
        )
        run.add_time("scan", record["seconds"])
        run.computed["scan"] = run.computed.get("scan", 0) + 1
    if scan_record["error"]:
        evaluation.errors["scan"] = scan_record["error"]
        return evaluation, records
    evaluation.triggers = [FoundTrigger.from_dict(t) for t in scan_record["triggers"]]
    digest = settings_key({"triggers": scan_record["triggers"], "model": weights})

    gate = config.gate
    for name, method in run.methods.items():
        cached = run.method_caches[name].load(truth.name)
        if cached is not None and cached.get("scan_digest") != digest:
            cached = None
        if cached is not None:  # decided by this run's options (EX-RAY: its policy) from what it measured
            cached = _redecided(method, cached)
        if cached is not None and cached.pop("legacy", False):  # keyed by its gate: judged from this one
            cached["min_asr"] = gate
        if cached is not None and cached["min_asr"] <= gate + 1e-12:
            records[name] = _at_gate(cached, evaluation.triggers, gate)
            continue
        judged_from = math.inf if cached is None else cached["min_asr"]  # triggers at or above: judged
        if cached is not None and not any(
            gate - ASR_TOLERANCE <= t.asr < judged_from - ASR_TOLERANCE for t in evaluation.triggers
        ):  # a lower gate, but no trigger between the two: nothing to judge
            saved = run.method_caches[name].save(truth.name, {**cached, "min_asr": gate})
            records[name] = _at_gate(saved, evaluation.triggers, gate)
            continue
        if not compute:
            return None
        run.progress.set_postfix_str(f"{truth.name}: {name}")
        start = time.perf_counter()
        try:
            model, examples = loaded_model()
            selection = select_cases(
                examples, evaluation.triggers, min_asr=gate, stamp_targets=method.needs_stamped_target
            )
            due = [
                k
                for k, i in enumerate(selection.indices)
                if evaluation.triggers[i].asr < judged_from - ASR_TOLERANCE
            ]
            cases = [selection.cases[k] for k in due]
            scores = _measure(method, model, cases, config) if cases else []
            record = {
                "indices": [*(cached or {}).get("indices", []), *(selection.indices[k] for k in due)],
                "scores": [*(cached or {}).get("scores", []), *(s.to_dict() for s in scores)],
                "min_asr": gate,
                "error": None,
            }
        except Exception as err:  # the method's failure on this model is recorded; its triggers stay
            if cached is not None:  # what was judged before stays cached and counts in this run
                records[name] = {**_at_gate(cached, evaluation.triggers, gate), "error": _failure(err)}
                run.add_time(name, time.perf_counter() - start)
                continue
            record = {"indices": [], "scores": [], "min_asr": gate, "error": _failure(err)}
        seconds = time.perf_counter() - start
        record["seconds"] = seconds + (cached or {}).get("seconds", 0.0)
        record["scan_digest"] = digest
        record["threads"] = torch.get_num_threads()
        saved = run.method_caches[name].save(truth.name, record)
        records[name] = _at_gate(saved, evaluation.triggers, gate)
        run.add_time(name, seconds)
        run.computed[name] = run.computed.get(name, 0) + 1
    return evaluation, records


def _redecided(method: RefinementMethod, record: dict[str, Any]) -> dict[str, Any]:
    """A stored record with its scores as ``method`` decides them now (:meth:`RefinementMethod.redecide`)."""
    stored = [TriggerScore.from_dict(s) for s in record["scores"]]
    decided = method.redecide(stored)
    if all(a is b for a, b in zip(stored, decided, strict=True)):  # nothing to re-decide: as stored
        return record
    return {**record, "scores": [s.to_dict() for s in decided]}


def _at_gate(record: dict[str, Any], triggers: Sequence[FoundTrigger], gate: float) -> dict[str, Any]:
    """``record`` with only the scores of the triggers at or above ``gate`` (a record may hold more: it was
    computed for a lower gate)."""
    keep = [
        (i, s) for i, s in zip(record["indices"], record["scores"]) if triggers[i].asr >= gate - ASR_TOLERANCE
    ]
    return {**record, "indices": [i for i, _ in keep], "scores": [s for _, s in keep]}


def make_run(config: EvaluationConfig, cache_root: Path) -> EvaluationRun:
    """The caches and method objects of one evaluation, as the main process and each worker build them."""
    scan_key = settings_key(config.scan_settings())
    return EvaluationRun(
        config=config,
        scan_cache=StageCache(cache_root, f"scan-{config.scanner}", scan_key),
        method_caches={
            name: StageCache(
                cache_root,
                name,
                settings_key(config.method_settings(name, scan_key)),
                legacy_keys=config.legacy_method_keys(name, scan_key),
            )
            for name in config.methods
        },
        methods={name: config.method(name) for name in config.methods},
        progress=NoProgress(),
    )


class NoProgress:
    """The progress bar of a worker process: the main process shows the bar."""

    def set_postfix_str(self, text: str) -> None:
        pass


def evaluate_job(
    truth: ModelTruth, config: EvaluationConfig, cache_root: Path
) -> tuple[ModelEvaluation, dict[str, dict[str, Any]], dict[str, float], dict[str, int]]:
    """One model in a worker process (:func:`evaluate_zoo` with ``workers`` > 1): its evaluation, method
    records, compute seconds and computed counts; its scan and scores are cached by the worker."""
    run = make_run(config, cache_root)
    evaluation, records = evaluate_model(truth, run)  # type: ignore[misc]  # computes: never None
    return evaluation, records, run.seconds, run.computed
