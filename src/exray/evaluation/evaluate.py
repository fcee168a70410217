"""``evaluate_zoo``: the paper's Table 1 on any labelled population (EXP §4.1–4.2, spec §4.6–4.7, §7.1).

For every model of the population:

1. the upstream scanner runs once (``refine=None``); its found triggers are cached as JSON;
2. every refinement method judges the same triggers — those whose label-specific ASR reaches the gate
   (``min_asr``, by default the calibration's flagging threshold: every trigger that can flag a model),
   as in :func:`exray.pipeline.scan` — and its per-trigger scores are cached. The cache does not depend
   on the gate: each record says down to which ASR it judged, a higher gate reuses part of it and a lower
   one judges only the triggers it lacks (a refitted calibration costs no recomputation).

Then, over the population:

3. the random forest is trained on the triggers of one half of the models and scores the other half, both
   ways (:func:`exray.refinement.split_models`, :func:`~exray.refinement.cross_fit`); the score baselines get
   per-kind thresholds with the best model-level separation (:func:`~exray.refinement.select_thresholds`) —
   the paper's protocol ("we use unsupervised learning to report the best separation", EXP §4.1), which
   fits the baselines on the population they are measured on. With ``rules_from`` (the evaluation of a
   separate population, e.g. the calibration zoo) the baselines apply that population's fitted rules
   instead — its thresholds, and a forest trained on all of its triggers — so that they are measured out
   of sample like the calibrated scanner + EX-RAY (issue 16 §4). EX-RAY and its one-sided variants
   decide by their own rule either way;
4. each method gives model-level decisions: a model is flagged when one of its triggers that was not
   pruned reaches the calibration threshold with its ASR; P(trojaned) = the calibration of the largest
   such ASR (spec §2.10) — the scanner alone is the same with nothing pruned;
5. TP/FP/FN/TN, accuracy, ROC-AUC, cross-entropy, Brier score, and FP reduction / TP loss relative to
   the scanner alone, for each group of trojaned models (by ground-truth trigger type) against all clean
   models, and for the whole population (:mod:`exray.evaluation.table`).

A model that cannot be loaded or scanned is recorded with its error and counts as not flagged with a
missing probability (0.5 in the TrojAI metrics); a method that fails on a model leaves that model's
triggers unjudged (kept), and the error is recorded. A re-run with the same settings reuses every cached
scan and score and only recomputes the population stage.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from exray.errors import ConfigError, ExrayError
from exray.evaluation.cache import StageCache, model_digest, settings_key
from exray.evaluation.config import EvaluationConfig
from exray.evaluation.decide import check_reference, decide
from exray.evaluation.outcome import ModelEvaluation
from exray.evaluation.report import write_outputs
from exray.evaluation.result import EvaluationResult
from exray.evaluation.table import build_rows
from exray.evaluation.truth import ModelTruth, read_truth
from exray.pipeline import scan
from exray.pipeline.loading import load_scan_inputs
from exray.refinement import (
    ASR_TOLERANCE,
    RandomForestMethod,
    RefinementMethod,
    TriggerScore,
    list_methods,
    select_cases,
)
from exray.scanners import FoundTrigger
from exray.utils import versions


@dataclass
class _Run:
    """Everything the stages share while one evaluation runs."""

    config: EvaluationConfig
    scan_cache: StageCache
    method_caches: dict[str, StageCache]
    methods: dict[str, RefinementMethod]
    progress: Any
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


def _evaluate_model(truth: ModelTruth, run: _Run) -> tuple[ModelEvaluation, dict[str, dict[str, Any]]]:
    """Scan (or reuse the cached scan of) one model and run (or reuse) every method on its triggers."""
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
            truth.name, {**record, "model_digest": weights, "versions": versions()}
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


def evaluate_zoo(
    zoo_dir: str | Path,
    out: str | Path,
    *,
    methods: Sequence[str] | None = None,
    scanner: str | None = None,
    config: EvaluationConfig | None = None,
    progress: bool = True,
    write: bool = True,
    rules_from: EvaluationResult | None = None,
) -> EvaluationResult:
    """Evaluate the scanner alone and every refinement method on the labelled population in ``zoo_dir``.

    ``out``: the output directory (``cache/``, ``table.csv``, ``evaluation.json``, ``roc.png``,
    ``index.html``). Settings come from ``config``, or — as a shorthand — from ``methods`` (default: all,
    in the order of the paper's Table 1) and ``scanner`` (default ``"abs"``) with every other setting at
    its default. ``write=False`` skips the table, JSON, plot and HTML files (the cache is still written).

    ``rules_from``: the result of evaluating a *separate* population with the same scanner, layer and
    method settings; the score baselines and the random forest then apply the rules fitted there instead
    of being fitted here (out of sample). A reference that shares a model (same weights) with this
    population, or that was run with other settings, raises :class:`~exray.errors.ConfigError`.
    """
    config = _resolve_config(config, methods, scanner)
    out = Path(out)
    models, skipped = read_truth(zoo_dir)
    if rules_from is not None:
        check_reference(rules_from, config, models)
    if config.groups is not None:
        left_out = [m for m in models if m.group is not None and m.group not in config.groups]
        skipped.update(
            (m.name, f"trigger group {m.group!r} is not among the evaluated groups {list(config.groups)}")
            for m in left_out
        )
        if left_out and all(m in left_out for m in models if m.poisoned):
            present = sorted({m.group for m in left_out})
            raise ConfigError(
                f"no trojaned model of {zoo_dir} is of the trigger groups {list(config.groups)}; "
                f"its groups: {present}"
            )
        present = {m.group for m in models if m.group is not None}
        unmatched = [g for g in config.groups if g not in present]
        if unmatched:
            warnings.warn(
                f"groups {unmatched} match no trojaned model of {zoo_dir} (its groups: {sorted(present)})",
                stacklevel=2,
            )
        models = [m for m in models if m not in left_out]
    scan_key = settings_key(config.scan_settings())
    cache_root = out / "cache"
    run = _Run(
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
        progress=None,
    )
    evaluations: list[ModelEvaluation] = []
    records: dict[str, dict[str, dict[str, Any]]] = {}
    with tqdm(total=len(models), desc="evaluate", unit="model", disable=not progress) as bar:
        run.progress = bar
        for truth in models:
            evaluation, model_records = _evaluate_model(truth, run)
            evaluations.append(evaluation)
            records[truth.name] = model_records
            bar.update()
    start = time.perf_counter()
    thresholds, fitted = decide(evaluations, records, config, run.methods, rules_from)
    run.add_time("population", time.perf_counter() - start)
    result = EvaluationResult(
        zoo=str(zoo_dir),
        out=out,
        config=config,
        models=evaluations,
        skipped=skipped,
        thresholds=thresholds,
        rows=build_rows(evaluations, config, run.methods),
        seconds=run.seconds,
        computed=run.computed,
        fitted=fitted,
    )
    if write:
        result.files = write_outputs(result)
    return result


def _resolve_config(
    config: EvaluationConfig | None, methods: Sequence[str] | None, scanner: str | None
) -> EvaluationConfig:
    if config is None:
        return EvaluationConfig(
            methods=tuple(list_methods()) if methods is None else tuple(methods), scanner=scanner or "abs"
        )
    if methods is not None or scanner is not None:
        raise ConfigError("pass methods and scanner inside config, or without a config — not both")
    return config
