"""The result of an evaluation: :class:`EvaluationResult` (per-model outcomes: outcome.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.evaluation.config import EvaluationConfig
from exray.evaluation.outcome import ModelEvaluation
from exray.evaluation.table import Row, format_table
from exray.refinement import RefinementMethod
from exray.utils import versions


@dataclass
class EvaluationResult:
    """What :func:`~exray.evaluation.evaluate_zoo` found.

    ``rows``: the table (:class:`~exray.evaluation.table.Row` per group and method); ``models``: every
    model's triggers, scores and outcomes; ``thresholds``: how each method decided (the fitted thresholds
    of the score baselines, the forest's split); ``skipped``: models left out, with the reason;
    ``seconds``: time spent per stage in this run; ``computed``: how many models each stage computed
    (not taken from the cache) in this run; ``files``: the written table/JSON/plot/HTML; ``fitted``: each
    method as it decided here (thresholds set, the forest trained on every trigger) — what
    ``evaluate_zoo(..., rules_from=this)`` applies to another population (not saved to JSON).
    """

    zoo: str
    out: Path
    config: EvaluationConfig
    models: list[ModelEvaluation]
    skipped: dict[str, str]
    thresholds: dict[str, dict[str, Any]]
    rows: list[Row]
    seconds: dict[str, float] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    fitted: dict[str, RefinementMethod] = field(default_factory=dict, repr=False)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.rows))

    def row(self, group: str, method: str) -> Row:
        """The row of ``method`` (a method name, or the scanner's name) in ``group``."""
        for r in self.rows:
            if r.group == group and r.method == method:
                return r
        raise KeyError(f"no row for method {method!r} in group {group!r}")

    def scores(self, method: str) -> tuple[list[float], list[int]]:
        """(model scores of ``method``, ground truth 0/1) over the models that have a score: what
        :func:`exray.pipeline.fit` fits a calibration on."""
        pairs = [
            (m.outcomes[method].score, int(m.truth.poisoned))
            for m in self.models
            if method in m.outcomes and m.outcomes[method].score is not None
        ]
        return [s for s, _ in pairs], [y for _, y in pairs]

    @property
    def errors(self) -> dict[str, dict[str, str]]:
        """{model: {stage: error}} for every model on which a stage failed."""
        return {m.name: m.errors for m in self.models if m.errors}

    @property
    def calibration_note(self) -> str:
        c = self.config.calibration
        return (
            f"calibration: {self.config.calibration_source} (p = {c.low:.3g} + {c.high - c.low:.3g}·"
            f"σ({c.slope:.3g}·(ASR − {c.threshold:.3g})); a model is flagged when a kept trigger's ASR "
            f"≥ {c.threshold:.3g})"
        )

    def table(self) -> str:
        """The comparison table as text, with the settings that produced it."""
        lines = [
            f"zoo: {self.zoo}  ({len(self.models)} models; scanner {self.config.scanner.upper()})",
            self.calibration_note,
        ]
        for name, info in self.thresholds.items():
            values = ", ".join(f"{k} {v:.4g}" for k, v in info["thresholds"].items()) or "none"
            lines.append(f"{self.config.method(name).title}: {info['rule']} [{values}]")
        if self.skipped:
            lines.append(f"skipped models: {self.skipped}")
        for model, errors in self.errors.items():
            for stage, message in errors.items():
                lines.append(f"error: {model} {stage}: {message.split(' | ')[0]}")
        return "\n".join(lines) + "\n\n" + format_table(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "zoo": self.zoo,
            "config": self.config.to_dict(),
            "calibration_note": self.calibration_note,
            "thresholds": self.thresholds,
            "rows": [r.to_dict() for r in self.rows],
            "models": [m.to_dict() for m in self.models],
            "skipped": self.skipped,
            "errors": self.errors,
            "seconds": self.seconds,
            "computed": self.computed,
            "versions": versions(["captum", "sklearn"]),
        }
