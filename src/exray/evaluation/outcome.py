"""Per-model outcomes of an evaluation: each row's answer for one model, and everything met on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exray.evaluation.truth import ModelTruth
from exray.refinement import TriggerScore
from exray.scanners import FoundTrigger


@dataclass
class Outcome:
    """One row's model-level answer for one model: ``flagged``, ``probability`` (``None``: the model
    failed), the score (largest kept ASR) and the indices of the pruned triggers."""

    flagged: bool
    probability: float | None
    score: float | None
    pruned: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "probability": self.probability,
            "score": self.score,
            "pruned": self.pruned,
        }


@dataclass
class ModelEvaluation:
    """One model: ground truth, its found triggers, every row's outcome and the errors met on the way."""

    truth: ModelTruth
    triggers: list[FoundTrigger] | None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    scores: dict[str, dict[int, TriggerScore]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.truth.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "poisoned": self.truth.poisoned,
            "group": self.truth.group,
            "errors": self.errors,
            "triggers": None
            if self.triggers is None
            else [
                {
                    "victim": t.victim,
                    "target": t.target,
                    "kind": t.kind,
                    "asr": t.asr,
                    "injected": self.truth.injected(t),
                    "scores": {m: s[i].value for m, s in self.scores.items() if i in s},
                }
                for i, t in enumerate(self.triggers)
            ],
            "outcomes": {row: outcome.to_dict() for row, outcome in self.outcomes.items()},
        }
