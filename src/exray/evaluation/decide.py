"""The population stage of an evaluation (paper §5, Table 1): how each method decides on a labelled zoo —
the random forest cross-fitted, score baselines' thresholds chosen for the best model-level separation, EX-RAY
by its own verdict, or all of them taken from another population's fitted rules (``rules_from``) — and every
model's outcome per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exray.errors import ConfigError
from exray.evaluation.cache import model_digest
from exray.evaluation.config import EvaluationConfig
from exray.evaluation.outcome import ModelEvaluation, Outcome
from exray.evaluation.result import EvaluationResult
from exray.evaluation.truth import ModelTruth
from exray.pipeline import Calibration
from exray.refinement import (
    ASR_TOLERANCE,
    RandomForestMethod,
    RefinementMethod,
    TriggerScore,
    cross_fit,
    select_thresholds,
    split_models,
)
from exray.scanners import FoundTrigger


def _outcome(triggers: Sequence[FoundTrigger], pruned: list[int], calibration: Calibration) -> Outcome:
    kept = [t.asr for i, t in enumerate(triggers) if i not in set(pruned)]
    score = max(kept, default=0.0)
    flagged = score >= calibration.threshold - ASR_TOLERANCE
    return Outcome(flagged, calibration.probability(score), score, sorted(pruned))


def _strong(trigger: FoundTrigger, calibration: Calibration) -> bool:
    return trigger.asr >= calibration.threshold - ASR_TOLERANCE


def check_reference(reference: EvaluationResult, config: EvaluationConfig, models: list[ModelTruth]) -> None:
    """``rules_from`` must come from another population judged the same way."""
    mine, theirs = config.to_dict(), reference.config.to_dict()
    for key in ("scanner", "scanner_options", "layer", "policy", "mask_config", "seed"):
        if mine[key] != theirs[key]:
            raise ConfigError(
                f"rules_from was evaluated with {key} {theirs[key]!r}, this evaluation uses {mine[key]!r}: "
                "rules fitted on other settings do not apply"
            )
    missing = [
        name
        for name, method in ((n, config.method(n)) for n in config.methods)
        if (method.fixed_threshold is None or isinstance(method, RandomForestMethod))
        and name not in reference.fitted
    ]
    if missing:
        raise ConfigError(f"rules_from has no fitted rule for {missing}: evaluate them on the reference too")
    for name in config.methods:
        if name in reference.fitted and reference.fitted[name].options() != config.method(name).options():
            raise ConfigError(f"rules_from ran {name!r} with other options: its rule does not apply here")
    theirs = {model_digest(m.truth.path) for m in reference.models} - {""}
    shared = [m.name for m in models if model_digest(m.path) in theirs]
    if shared:
        raise ConfigError(
            f"rules_from ({reference.zoo}) shares {len(shared)} model(s) with this population: rules "
            "fitted on them would be measured in sample"
        )


def decide(
    evaluations: list[ModelEvaluation],
    records: dict[str, dict[str, dict[str, Any]]],
    config: EvaluationConfig,
    methods: dict[str, RefinementMethod],
    rules_from: EvaluationResult | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, RefinementMethod]]:
    """The population stage: fit the forest and the thresholds (or take them from ``rules_from``), then
    every model's outcome per row. Returns how each method decided and the fitted methods (thresholds
    set, the forest trained on every trigger), which another evaluation can apply as ``rules_from``."""
    calibration = config.calibration
    scanned = [e for e in evaluations if e.triggers is not None]
    for evaluation in evaluations:
        if evaluation.triggers is None:
            for row in (config.scanner, *config.methods):
                evaluation.outcomes[row] = Outcome(False, None, None)
            continue
        evaluation.outcomes[config.scanner] = _outcome(evaluation.triggers, [], calibration)
    thresholds: dict[str, dict[str, Any]] = {}
    fitted: dict[str, RefinementMethod] = {}
    if not scanned:
        return {name: {"rule": "no model could be scanned", "thresholds": {}} for name in methods}, fitted
    source = (
        None
        if rules_from is None
        else f"fitted on {rules_from.zoo} ({len(rules_from.models)} models, "
        f"gate {rules_from.config.gate:.4g})"
    )
    for name, method in methods.items():
        for evaluation in scanned:
            record = records[evaluation.name][name]
            if record["error"]:
                evaluation.errors[name] = record["error"]
            evaluation.scores[name] = {
                i: TriggerScore.from_dict(s) for i, s in zip(record["indices"], record["scores"])
            }
        if isinstance(method, RandomForestMethod):
            reference = None if rules_from is None else rules_from.fitted[name]
            thresholds[name], trained = _fit_forest(scanned, name, method, config, reference, source)
            if trained is not None:
                fitted[name] = trained
        elif method.fixed_threshold is None:
            if rules_from is None:
                choice = select_thresholds(
                    [
                        [
                            (
                                t.kind,
                                evaluation.scores[name][i].value if i in evaluation.scores[name] else None,
                            )
                            for i, t in enumerate(evaluation.triggers)
                            if _strong(t, calibration)
                        ]
                        for evaluation in scanned
                    ],
                    [e.truth.poisoned for e in scanned],
                )
                methods[name] = method = method.with_thresholds(choice.thresholds)
                thresholds[name] = {
                    "rule": "best model-level separation on the population, per trigger kind",
                    "thresholds": choice.thresholds,
                    "accuracy": choice.accuracy,
                }
            else:
                methods[name] = method = rules_from.fitted[name]
                thresholds[name] = {
                    "rule": f"per-kind thresholds of the best separation on the reference, {source}",
                    "thresholds": dict(method.thresholds),
                    "reference_accuracy": rules_from.thresholds[name].get("accuracy"),
                }
            fitted[name] = method
        else:
            policy = method.options().get("policy", "")
            thresholds[name] = {"rule": f"its own verdict (policy {policy})", "thresholds": {"*": 0.5}}
            fitted[name] = method
        for evaluation in scanned:
            pruned = _pruned(method, evaluation.scores[name], evaluation.triggers)
            evaluation.outcomes[name] = _outcome(evaluation.triggers, pruned, calibration)
    return thresholds, fitted


def _pruned(
    method: RefinementMethod, scores: dict[int, TriggerScore], triggers: Sequence[FoundTrigger]
) -> list[int]:
    """Indices of the triggers ``method`` judges natural. A score baseline has no threshold for a kind of
    which no trigger could flag a model; such triggers cannot change a decision and are kept."""
    pruned = []
    for i, score in scores.items():
        kind = triggers[i].kind
        if score.value is None or (method.fixed_threshold is None and kind not in method.thresholds):
            continue
        if method.decide(score, kind).natural:
            pruned.append(i)
    return pruned


def _fit_forest(
    scanned: list[ModelEvaluation],
    name: str,
    method: RandomForestMethod,
    config: EvaluationConfig,
    reference: RandomForestMethod | None,
    source: str | None,
) -> tuple[dict[str, Any], RandomForestMethod | None]:
    """Two-fold cross-fitting by model: each half is scored by the forest trained on the other half — or,
    with a ``reference`` forest (trained on another population, described by ``source``), every trigger
    is scored by it. Also
    returns the forest trained on every trigger here (what another evaluation applies as ``rules_from``;
    ``None`` when no trigger was judged)."""
    halves = split_models([e.name for e in scanned], [e.truth.poisoned for e in scanned], seed=config.seed)
    features, injected = {}, {}
    for evaluation in scanned:
        indices = sorted(evaluation.scores[name])
        features[evaluation.name] = [evaluation.scores[name][i].details["features"] for i in indices]
        injected[evaluation.name] = [evaluation.truth.injected(evaluation.triggers[i]) for i in indices]
    rows = [row for m in features for row in features[m]]
    labels = [bool(y) for m in injected for y in injected[m]]
    trained = method.fit(rows, labels, seed=config.seed) if rows else None
    if reference is None:
        scored = cross_fit(features, injected, halves, trees=method.trees, seed=config.seed)
        rule = {
            "rule": "random forest trained on the other half of the models; injected when P >= 0.5",
            "thresholds": {"*": 0.5},
            "halves": [list(h) for h in halves],
        }
    else:
        scored = {model: reference.scores_of(list(rows_)) for model, rows_ in features.items()}
        rule = {
            "rule": f"random forest trained on every trigger of the reference, {source}",
            "thresholds": {"*": 0.5},
        }
    for evaluation in scanned:
        indices = sorted(evaluation.scores[name])
        evaluation.scores[name] = dict(zip(indices, scored[evaluation.name]))
    return rule, trained
