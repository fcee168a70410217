"""Scan one model: upstream scanner → triggers → EX-RAY verdicts → P(trojaned) (design §2, spec §2.9–2.10).

The only place that knows the whole flow. A trigger whose label-specific attack success rate (ASR) on its
victim class reaches the gate is judged by EX-RAY (all of a model's triggers in one batched call); a
trigger judged natural is pruned. The model's score is the largest ASR among the triggers that were not
pruned, and the probability is the calibrated score. The gate (:func:`judging_gate`) is
``refine_min_asr`` if given, else the calibration's flagging threshold: one ASR constant gates the
refinement and the decision, as in the official submissions (naiyeleo/ABS, TrojAI round 3:
``asr_bound = 0.9`` for both; round 2: 0.99), so every trigger that can flag a model is judged first.

``victims="found"`` (the paper's and the official code's rule, spec §4.2) judges a trigger once, with the
victim class the scanner reports. ``victims="flipped"`` [CHOICE] judges it with *every* class it flips
(label-specific ASR ≥ ``refine_min_asr``) and keeps it only when a strict majority of those verdicts say
injected: a trojan trigger flips each of its source classes through its own features, while a natural
universal trigger (a colour shift toward the target's colour) is natural from most victims even when one
victim/target pair happens to look injected.

Any refinement method of :mod:`exray.refinement` can take EX-RAY's place through the same per-trigger
interface: by name for the methods that decide by their own rule (:data:`REFINERS`), or as a configured
:class:`~exray.refinement.RefinementMethod` object (a score baseline with its thresholds, a fitted forest).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from exray.data.images import check_images
from exray.differencing import Verdict
from exray.errors import ConfigError, InputError
from exray.models.runtime import model_device, predict_logits
from exray.options import make_options
from exray.pipeline.settings import (  # re-exported: scan()'s settings were checked here before ScanSettings
    REFINERS as REFINERS,
)
from exray.pipeline.settings import VICTIM_RULES as VICTIM_RULES
from exray.pipeline.settings import ScanSettings
from exray.pipeline.settings import check_min_asr as check_min_asr
from exray.pipeline.settings import check_victim_rule as check_victim_rule
from exray.pipeline.settings import judging_gate as judging_gate
from exray.pipeline.settings import resolve_refiner as resolve_refiner
from exray.refinement import Judgement, RefinementCase, select_cases
from exray.refinement.base import ASR_TOLERANCE
from exray.scanners import FoundTrigger
from exray.scanners.result import attack_rates
from exray.utils import versions


@dataclass
class TriggerReport:
    """One trigger of a scan and what happened to it: ``pruned`` when the refinement judged it natural.

    ``judgement``: the refinement method's score and decision; ``verdict``: EX-RAY's verdict (EX-RAY and
    its one-sided variants), both for the scanner's victim class. ``victim_votes``: with
    ``victims="flipped"``, whether the method called the trigger natural from each victim class it flips
    (the majority decides ``pruned``).
    """

    found: FoundTrigger
    verdict: Verdict | None = None
    note: str | None = None
    judgement: Judgement | None = None
    victim_votes: dict[int, bool] | None = None

    @property
    def pruned(self) -> bool:
        if self.judgement is not None:
            return self.judgement.natural is True
        return self.verdict is not None and self.verdict.natural

    @property
    def score(self) -> float:
        """The trigger's contribution to the model score: its ASR, or 0 when pruned as natural."""
        return 0.0 if self.pruned else self.found.asr

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.found.to_dict(),
            "score": self.score,
            "pruned": self.pruned,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "judgement": None if self.judgement is None else self.judgement.to_dict(),
            "victim_votes": None
            if self.victim_votes is None
            else {str(k): v for k, v in self.victim_votes.items()},
            "note": self.note,
        }


@dataclass
class ScanResult:
    """The result of scanning one model (design §2, §4 "Results")."""

    model: str
    probability: float
    score: float
    triggers: list[TriggerReport]
    scanner: str
    refine: str | None
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    error: str | None = None

    @property
    def flagged(self) -> list[TriggerReport]:
        """Triggers that count against the model (not pruned), strongest first."""
        return sorted((t for t in self.triggers if not t.pruned), key=lambda t: -t.found.asr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "probability": self.probability,
            "score": self.score,
            "triggers": [t.to_dict() for t in self.triggers],
            "scanner": self.scanner,
            "refine": self.refine,
            "seed": self.seed,
            "timings": self.timings,
            "diagnostics": self.diagnostics,
            "versions": self.versions,
            "error": self.error,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def check_scan_examples(examples: dict[int, torch.Tensor]) -> None:
    """Raise :class:`InputError` unless ``examples`` is a usable {class: images} mapping for a scan (at least
    two classes of one image shape; the scanner then checks them against the model)."""
    if not isinstance(examples, dict) or len(examples) < 2:
        raise InputError("a scan needs clean example images of at least two classes")
    shapes = set()
    for label, images in examples.items():
        check_images(images, f"examples of class {label}", unit_range=True)
        shapes.add(tuple(images.shape[1:]))
    if len(shapes) > 1:
        raise InputError(f"example classes have different image shapes {sorted(shapes)}")


def scan(
    model: nn.Module,
    examples: dict[int, torch.Tensor],
    settings: ScanSettings | None = None,
    *,
    triggers: list[FoundTrigger] | None = None,
    name: str = "model",
    progress: bool = False,
    **options: Any,
) -> ScanResult:
    """Scan ``model`` with its clean ``examples`` ({class: Tensor[N,3,H,W]} in [0, 1]).

    ``settings``: a :class:`~exray.pipeline.settings.ScanSettings`, or its fields as keywords
    (``scan(model, examples, scanner="nc", refine=None)``), not both. ``triggers`` skips scanning and
    judges the given triggers instead. Timings per stage are recorded in the result. Everything runs on the
    model's device (put it on a GPU with ``load_model(..., device=...)``); the result's
    ``diagnostics["device"]`` says which.
    """
    if settings is None:
        settings = make_options(ScanSettings, options)
    elif options:
        raise ConfigError(f"pass scan settings as a ScanSettings or as keywords, not both: {sorted(options)}")
    elif not isinstance(settings, ScanSettings):
        raise ConfigError(f"settings must be a ScanSettings, got {type(settings).__name__}")
    if triggers is not None and (
        not isinstance(triggers, list | tuple) or not all(isinstance(t, FoundTrigger) for t in triggers)
    ):
        raise InputError("triggers must be None or a list of FoundTrigger (from a scanner)")
    method = settings.refinement()
    check_scan_examples(examples)
    calibration, seed = settings.calibration, settings.seed
    timings: dict[str, float] = {}
    diagnostics: dict[str, Any] = {"device": str(model_device(model))}  # where it ran (floats differ)
    if triggers is None:
        chosen = settings.build_scanner()
        start = time.perf_counter()
        found = chosen.scan(model, examples, layer=settings.scanner_layer, seed=seed, progress=progress)
        timings.update({f"scanner.{k}": v for k, v in found.timings.items()})
        timings["scanner"] = time.perf_counter() - start
        diagnostics["scanner"] = found.diagnostics
        scanner_name = settings.scanner_name
        triggers = found.triggers
    else:
        scanner_name = "user"
    reports = [TriggerReport(t) for t in triggers]
    if method is not None:
        start = time.perf_counter()
        _refine(
            method, model, examples, reports, settings.gate, settings.victims, settings.layer, seed, progress
        )
        timings[method.name] = time.perf_counter() - start
        verdicts = [r.verdict for r in reports if r.verdict is not None]
        diagnostics["refinement"] = {
            "judged": len(verdicts),
            # beyond the paper: verdicts on a layer too entangled for EX-RAY's premise (M1 covers most of it)
            "entangled": sum(v.entangled for v in verdicts),
            "degenerate": sum(any(v.degenerate) for v in verdicts),
            "layers": sorted({v.layer for v in verdicts}),
        }
    score = max((r.score for r in reports), default=0.0)
    return ScanResult(
        model=name,
        probability=calibration.probability(score),
        score=score,
        triggers=reports,
        scanner=scanner_name,
        refine=None if method is None else method.name,
        seed=seed,
        timings=timings,
        diagnostics=diagnostics,
    )


def _refine(method, model, examples, reports, min_asr, victims, layer, seed, progress) -> None:
    """Judge every strong-enough trigger with ``method``, all of the model's triggers in one call."""
    selection = select_cases(
        examples, [r.found for r in reports], min_asr=min_asr, stamp_targets=method.needs_stamped_target
    )
    for i, note in selection.notes.items():
        reports[i].note = note
    if not selection.cases:
        return
    owners, cases = list(selection.indices), list(selection.cases)
    if victims == "flipped":
        for i in selection.indices:
            extra = flipped_cases(model, examples, reports[i].found, min_asr, method.needs_stamped_target)
            owners += [i] * len(extra)
            cases += extra
    judgements = method.judge(model, cases, layer=layer, seed=seed, progress=progress)
    for i, judgement in zip(selection.indices, judgements):
        reports[i].judgement = judgement
        reports[i].verdict = judgement.score.verdict
        if judgement.natural is None:
            reports[i].note = judgement.score.note
    if victims == "flipped":
        for i in selection.indices:
            votes = {
                case.victim_label: judgement.natural
                for owner, case, judgement in zip(owners, cases, judgements)
                if owner == i and judgement.natural is not None
            }
            _decide_by_majority(reports[i], votes)


def flipped_cases(
    model: nn.Module,
    examples: dict[int, torch.Tensor],
    found: FoundTrigger,
    min_asr: float,
    stamp_targets: bool = False,
) -> list[RefinementCase]:
    """Cases for the classes other than the scanner's victim that ``found`` flips to its target: its
    label-specific ASR on that class (:func:`~exray.scanners.result.attack_rates`) reaches ``min_asr``."""
    stamped = {
        label: found.trigger.apply(images)
        for label, images in sorted(examples.items())
        if label not in (found.victim, found.target)
    }
    rates, _ = attack_rates({c: predict_logits(model, x).argmax(1) for c, x in stamped.items()}, found.target)
    flipped = [c for c in stamped if rates[c] >= min_asr - ASR_TOLERANCE]
    stamped_target = found.trigger.apply(examples[found.target]) if stamp_targets and flipped else None
    target = examples[found.target]
    return [
        RefinementCase(examples[c], target, stamped[c], c, found.target, found.kind, stamped_target)
        for c in flipped
    ]


def _decide_by_majority(report: TriggerReport, votes: dict[int, bool]) -> None:
    """Keep the trigger only when a strict majority of its victims' verdicts say injected."""
    if report.judgement is None or report.judgement.natural is None or len(votes) < 2:
        return
    injected = sum(not natural for natural in votes.values())
    natural = injected * 2 <= len(votes)
    report.victim_votes = dict(sorted(votes.items()))
    report.judgement = replace(report.judgement, natural=natural)
    report.note = f"judged from the {len(votes)} classes it flips: injected from {injected}"
