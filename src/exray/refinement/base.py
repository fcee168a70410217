"""The per-trigger interface shared by EX-RAY and its baselines (design §1, spec §4.7).

A refinement method looks at one trigger at a time — clean victim images V, clean target images T and
the victim images stamped with the trigger (V+t) — and returns a :class:`TriggerScore` whose ``value`` is
higher for a more *injected*-looking trigger (``None``: the method does not apply, e.g. Network
Dissection on a filter trigger). The natural/injected decision is ``value < threshold`` → natural, where
the threshold is

* fixed by the method's own rule (EX-RAY and one-sided EX-RAY: value 1 = injected, 0 = natural,
  threshold 0.5; the random forest: P(injected) ≥ 0.5), or
* chosen per trigger kind on a labelled population (the attribution and distance baselines; spec §4.7:
  "choosing the threshold that best separates them on the labelled model set", see
  :mod:`exray.refinement.thresholds`) and given to the method with :meth:`RefinementMethod.with_thresholds`.

:func:`select_cases` turns a scan's found triggers into the cases a method judges, with the same rules in
``exray.pipeline.scan`` and ``exray evaluate``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from exray.differencing import TriggerCase, Verdict
from exray.errors import ConfigError, InputError
from exray.scanners import FoundTrigger

KINDS: tuple[str, ...] = ("patch", "filter")
#: ASRs are fractions of a few examples held in float32: 0.9 may read 0.89999998.
ASR_TOLERANCE = 1e-4


@dataclass
class RefinementCase(TriggerCase):
    """A :class:`~exray.differencing.TriggerCase` that may also carry the clean *target* images stamped
    with the trigger (T+t), which the random-forest baseline's features need (paper §4.1)."""

    stamped_target: torch.Tensor | None = None


@dataclass
class TriggerScore:
    """One method's measurement of one trigger.

    ``value``: higher = more injected; ``None`` when the method does not apply (``note`` says why).
    ``details``: JSON-able facts (selected channels, features, …). ``verdict``: EX-RAY's full verdict for
    the EX-RAY family.
    """

    value: float | None
    details: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "details": self.details,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TriggerScore:
        try:
            return cls(
                value=None if data["value"] is None else float(data["value"]),
                details=dict(data["details"]),
                verdict=None if data["verdict"] is None else Verdict.from_dict(data["verdict"]),
                note=data["note"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not a trigger-score dict: {err}") from None


@dataclass
class Judgement:
    """A method's decision on one trigger: ``natural`` is ``None`` when the method does not apply (the
    trigger is kept, as an unrefined one)."""

    method: str
    score: TriggerScore
    natural: bool | None
    threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "natural": self.natural,
            "threshold": self.threshold,
            "value": self.score.value,
            "details": self.score.details,
            "note": self.score.note,
        }


class RefinementMethod(ABC):
    """A per-trigger method that tells natural triggers from injected ones (design §1).

    Subclasses set ``name`` (registry key), ``title`` (table row), ``kinds`` (trigger kinds it applies
    to) and ``fixed_threshold`` (``None``: the threshold is chosen on a labelled population), and
    implement :meth:`_score` for the cases of applicable kinds.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    kinds: ClassVar[frozenset[str]] = frozenset(KINDS)
    fixed_threshold: ClassVar[float | None] = None
    #: whether :class:`RefinementCase.stamped_target` must be filled in
    needs_stamped_target: ClassVar[bool] = False

    def __init__(self) -> None:
        self.thresholds: dict[str, float] = {}

    @abstractmethod
    def _score(
        self, model: nn.Module, cases: list[TriggerCase], *, layer: str | None, seed: int, progress: bool
    ) -> list[TriggerScore]:
        """Scores of ``cases`` (all of an applicable kind, target labels given)."""

    def options(self) -> dict[str, Any]:
        """The method's JSON-able options (what its scores depend on), for caches and reports."""
        return {}

    def measurement_options(self) -> dict[str, Any]:
        """The options its stored measurements depend on (a cache key): :meth:`options`, less those that
        only decide from the measurements, which :meth:`redecide` re-applies to stored scores."""
        return self.options()

    def redecide(self, scores: Sequence[TriggerScore]) -> list[TriggerScore]:
        """Stored ``scores`` (measured under the same :meth:`measurement_options`) as this method's current
        options decide them. Default: unchanged."""
        return list(scores)

    def score(
        self,
        model: nn.Module,
        cases: Sequence[TriggerCase],
        *,
        layer: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> list[TriggerScore]:
        """One :class:`TriggerScore` per case; cases of kinds the method does not cover get ``value=None``."""
        for i, case in enumerate(cases):
            if not isinstance(case, TriggerCase):
                raise InputError(f"case {i} is a {type(case).__name__}, not a TriggerCase")
            if case.kind not in KINDS:
                raise InputError(f"case {i}: kind must be one of {KINDS}, got {case.kind!r}")
            if case.target_label is None:
                raise InputError(f"case {i}: {self.title} needs the target label of every trigger")
        applicable = [i for i, case in enumerate(cases) if case.kind in self.kinds]
        scores: list[TriggerScore] = [
            TriggerScore(None, note=f"{self.title} does not apply to {case.kind} triggers") for case in cases
        ]
        if applicable:
            computed = self._score(
                model, [cases[i] for i in applicable], layer=layer, seed=seed, progress=progress
            )
            for i, result in zip(applicable, computed):
                scores[i] = result
        return scores

    def threshold(self, kind: str) -> float:
        """The decision threshold for triggers of ``kind`` (natural when the score is below it)."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        if kind not in self.thresholds:
            raise ConfigError(
                f"{self.title} has no threshold for {kind} triggers: choose thresholds on a labelled "
                "population (exray.refinement.select_thresholds, or `exray evaluate`) and pass them with "
                "with_thresholds()"
            )
        return self.thresholds[kind]

    def with_thresholds(self, thresholds: Mapping[str, float]) -> RefinementMethod:
        """A copy of this method deciding with ``thresholds`` ({kind: threshold})."""
        if self.fixed_threshold is not None:
            raise ConfigError(f"{self.title} decides with its own rule; it takes no thresholds")
        unknown = set(thresholds) - set(KINDS)
        if unknown:
            raise ConfigError(f"thresholds for unknown trigger kinds {sorted(unknown)}; kinds are {KINDS}")
        method = copy.copy(self)
        method.thresholds = {k: float(v) for k, v in thresholds.items()}
        return method

    def decide(self, score: TriggerScore, kind: str) -> Judgement:
        """Natural when ``score.value`` is below the threshold for ``kind``; ``None`` when not applicable."""
        if score.value is None:
            return Judgement(self.name, score, None, None)
        threshold = self.threshold(kind)
        return Judgement(self.name, score, score.value < threshold, threshold)

    def judge(
        self,
        model: nn.Module,
        cases: Sequence[TriggerCase],
        *,
        layer: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> list[Judgement]:
        """Score and decide every case (the thresholds must be known, see :meth:`threshold`)."""
        for case in cases:
            if case.kind in self.kinds:
                self.threshold(case.kind)  # fail before the expensive scoring
        scores = self.score(model, cases, layer=layer, seed=seed, progress=progress)
        return [self.decide(s, case.kind) for s, case in zip(scores, cases)]


@dataclass
class Selection:
    """Which of a scan's triggers a method judges: ``indices`` into the trigger list, their ``cases``, and
    a ``notes`` entry for every trigger that is not judged (by index)."""

    indices: list[int]
    cases: list[RefinementCase]
    notes: dict[int, str]


def select_cases(
    examples: Mapping[int, torch.Tensor],
    triggers: Sequence[FoundTrigger],
    *,
    min_asr: float,
    stamp_targets: bool = False,
) -> Selection:
    """The cases to judge: every trigger whose label-specific ASR reaches ``min_asr`` (spec §4.5: "EX-RAY
    is invoked only when the trigger's label-specific REASR > 0.99"; the pipeline's default is 0.9) and
    whose victim and target classes have clean examples. ``stamp_targets`` also stamps the target images.
    """
    indices, cases, notes = [], [], {}
    for i, found in enumerate(triggers):
        if found.asr < min_asr - ASR_TOLERANCE:
            notes[i] = f"ASR {found.asr:.2f} < {min_asr}: not refined"
            continue
        if found.target not in examples or found.victim not in examples:
            notes[i] = "no clean examples of the victim or target class: not refined"
            continue
        try:
            stamped = found.trigger.apply(examples[found.victim])
            stamped_target = found.trigger.apply(examples[found.target]) if stamp_targets else None
        except InputError as err:
            notes[i] = f"cannot stamp the victim images: {err}"
            continue
        indices.append(i)
        cases.append(
            RefinementCase(
                examples[found.victim],
                examples[found.target],
                stamped,
                found.victim,
                found.target,
                found.kind,
                stamped_target=stamped_target,
            )
        )
    return Selection(indices, cases, notes)
