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

import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from exray.errors import ConfigError, ExrayError
from exray.evaluation.config import EvaluationConfig
from exray.evaluation.decide import check_reference, decide
from exray.evaluation.outcome import ModelEvaluation
from exray.evaluation.per_model import EvaluationRun, evaluate_job, evaluate_model, make_run
from exray.evaluation.report import write_outputs
from exray.evaluation.result import EvaluationResult
from exray.evaluation.table import build_rows
from exray.evaluation.truth import ModelTruth, read_truth
from exray.options import check_int
from exray.refinement import list_methods
from exray.utils import available_cores, cap_workers, intra_op_threads, run_pooled


def _check_workers(workers: object, threads: object) -> tuple[int, int | None]:
    """``(workers, threads)`` checked, ``workers`` capped at the cores; ``threads`` for more than one worker
    defaults to the cores split between them."""
    check_int("workers", workers, 1, 1024)
    if threads is not None:
        check_int("threads", threads, 1, 1024)
    workers = cap_workers(workers, stacklevel=4)  # type: ignore[arg-type]  # at evaluate_zoo's caller
    if workers > 1 and threads is None:
        threads = max(1, available_cores() // workers)
    return workers, threads  # type: ignore[return-value]


def _evaluate_models(
    models: list[ModelTruth],
    run: EvaluationRun,
    cache_root: Path,
    workers: int,
    threads: int | None,
    bar: Any,
) -> tuple[list[ModelEvaluation], dict[str, dict[str, dict[str, Any]]]]:
    """Every model's evaluation and method records, in the population's order: in this process, or — with
    ``workers`` > 1 — read here from the caches where they hold everything, computed by worker processes
    otherwise."""
    records: dict[str, dict[str, dict[str, Any]]] = {}
    if workers == 1:
        evaluations = []
        for truth in models:
            evaluation, records[truth.name] = evaluate_model(truth, run)  # type: ignore[misc]
            evaluations.append(evaluation)
            bar.update()
        return evaluations, records
    found: list[ModelEvaluation | None] = [None] * len(models)
    due = []
    for index, truth in enumerate(models):
        cached = evaluate_model(truth, run, compute=False)
        if cached is None:
            due.append(index)
        else:
            found[index], records[truth.name] = cached
            bar.update()
    tasks = [(models[index], run.config, cache_root) for index in due]
    for position, done, died in run_pooled(evaluate_job, tasks, min(workers, len(due) or 1), threads):
        index = due[position]
        truth = models[index]
        if done is None:  # its worker died even alone (out of memory, a crash in native code)
            found[index], records[truth.name] = ModelEvaluation(truth, None), {}
            found[index].errors["scan"] = str(died)  # never scanned: reported as such
        else:
            found[index], records[truth.name], seconds, computed = done
            for stage, value in seconds.items():
                run.add_time(stage, value)
            for stage, count in computed.items():
                run.computed[stage] = run.computed.get(stage, 0) + count
        bar.set_postfix_str(truth.name)
        bar.update()
    missing = [models[i].name for i, e in enumerate(found) if e is None]
    if missing:  # run_pooled reports every task; a gap would silently shrink the population
        raise ExrayError(f"the worker pool reported no result for {missing}")
    return found, records  # type: ignore[return-value]


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
    workers: int = 1,
    threads: int | None = None,
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

    ``workers``: models evaluated at once (at most the available cores), each in its own process with
    ``threads`` intra-op threads (default: the cores split between the workers, however few models are
    left to compute, so that the records keep one thread count); 1 (default) evaluates them in this
    process, with ``threads`` threads if given (on 2 cores, 2 × 1 evaluated ×1.06 faster than 1 × 2:
    ``benchmarks/bench_eval_workers.py``). The results depend on ``workers`` only through the thread
    count (another float summation order), which each cached record notes; a worker whose process dies
    (e.g. out of memory) costs only its model (:func:`exray.utils.run_pooled`). Workers are fresh
    processes: scanners, methods or architectures registered at run time in this process are not
    registered there. ``seconds`` sums the models' compute times (over workers: more than the wall time).
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
    workers, threads = _check_workers(workers, threads)
    run = make_run(config, out / "cache")
    # the thread budget also holds for a lone due model, which run_pooled runs in this process
    budget = intra_op_threads(threads) if threads else nullcontext()
    with tqdm(total=len(models), desc="evaluate", unit="model", disable=not progress) as bar, budget:
        run.progress = bar
        evaluations, records = _evaluate_models(models, run, out / "cache", workers, threads, bar)
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
