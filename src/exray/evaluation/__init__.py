"""Evaluation of scanners and refinement methods on labelled model populations (``exray evaluate``).

:func:`evaluate_zoo` runs the upstream scanner once per model, every refinement method of
:mod:`exray.refinement` on the same (cached) triggers, and reports the paper's Table 1 per trigger type
with the TrojAI metrics (EXP §4.1–4.2, spec §4.6–4.7, §7.1).
"""

from exray.evaluation.config import EvaluationConfig
from exray.evaluation.evaluate import evaluate_zoo
from exray.evaluation.outcome import ModelEvaluation, Outcome
from exray.evaluation.result import EvaluationResult
from exray.evaluation.table import Row, format_table
from exray.evaluation.truth import ModelTruth, TruthTrigger, read_truth

__all__ = [
    "EvaluationConfig",
    "EvaluationResult",
    "ModelEvaluation",
    "ModelTruth",
    "Outcome",
    "Row",
    "TruthTrigger",
    "evaluate_zoo",
    "format_table",
    "read_truth",
]
