"""Scan one model: upstream scanner → triggers → EX-RAY verdicts → P(trojaned) (design §2, spec §2.9–2.10).

The only place that knows the whole flow. A trigger whose label-specific attack success rate (ASR) on its
victim class reaches ``refine_min_asr`` is judged by EX-RAY (all of a model's triggers in one batched call);
a trigger judged natural is pruned. The model's score is the largest ASR among the triggers that were not
pruned, and the probability is the calibrated score.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from exray.differencing import MaskConfig, TriggerCase, Verdict, compare_triggers
from exray.differencing.policies import Policy
from exray.errors import ConfigError, InputError
from exray.models.layers import check_images
from exray.pipeline.calibration import Calibration
from exray.scanners import FoundTrigger, Scanner, get_scanner
from exray.utils import versions

REFINERS = ("exray",)
ASR_TOLERANCE = 1e-4  # ASRs are fractions of a few examples held in float32: 0.9 may read 0.89999998


@dataclass
class TriggerReport:
    """One trigger of a scan and what happened to it: ``pruned`` when EX-RAY judged it natural."""

    found: FoundTrigger
    verdict: Verdict | None = None
    note: str | None = None

    @property
    def pruned(self) -> bool:
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


def check_examples(examples: dict[int, torch.Tensor]) -> None:
    """Raise :class:`InputError` unless ``examples`` is a usable {class: images} mapping."""
    if not isinstance(examples, dict) or len(examples) < 2:
        raise InputError("a scan needs clean example images of at least two classes")
    shapes = set()
    for label, images in examples.items():
        check_images(images, f"examples of class {label}")
        shapes.add(tuple(images.shape[1:]))
    if len(shapes) > 1:
        raise InputError(f"example classes have different image shapes {sorted(shapes)}")


def scan(
    model: nn.Module,
    examples: dict[int, torch.Tensor],
    *,
    scanner: str | Scanner = "abs",
    refine: str | None = "exray",
    seed: int = 0,
    layer: str | None = None,
    policy: str | Policy = "official",
    mask_config: MaskConfig | None = None,
    calibration: Calibration | None = None,
    refine_min_asr: float = 0.9,
    triggers: list[FoundTrigger] | None = None,
    scanner_options: dict[str, Any] | None = None,
    name: str = "model",
    progress: bool = False,
) -> ScanResult:
    """Scan ``model`` with its clean ``examples`` ({class: Tensor[N,3,H,W]} in [0, 1]).

    ``scanner``: a registry name (``"abs"``, ``"nc"``) or a scanner object; ``triggers`` skips scanning and
    judges the given triggers instead. ``refine="exray"`` prunes natural triggers, ``None`` reports the
    scanner alone. Timings per stage are recorded in the result.
    """
    if refine is not None and refine not in REFINERS:
        raise ConfigError(f"refine must be None or one of {REFINERS}, got {refine!r}")
    check_examples(examples)
    calibration = calibration or Calibration()
    timings: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    if triggers is None:
        chosen = get_scanner(scanner, **(scanner_options or {})) if isinstance(scanner, str) else scanner
        start = time.perf_counter()
        found = chosen.scan(model, examples, layer=layer, seed=seed, progress=progress)
        timings.update({f"scanner.{k}": v for k, v in found.timings.items()})
        timings["scanner"] = time.perf_counter() - start
        diagnostics["scanner"] = found.diagnostics
        scanner_name = scanner if isinstance(scanner, str) else type(scanner).__name__
        triggers = found.triggers
    else:
        scanner_name = "user"
    reports = [TriggerReport(t) for t in triggers]
    if refine == "exray":
        start = time.perf_counter()
        _refine(model, examples, reports, refine_min_asr, layer, policy, mask_config, seed, progress)
        timings["exray"] = time.perf_counter() - start
    score = max((r.score for r in reports), default=0.0)
    return ScanResult(
        model=name,
        probability=calibration.probability(score),
        score=score,
        triggers=reports,
        scanner=scanner_name,
        refine=refine,
        seed=seed,
        timings=timings,
        diagnostics=diagnostics,
    )


def _refine(model, examples, reports, min_asr, layer, policy, mask_config, seed, progress) -> None:
    """Judge every strong-enough trigger with EX-RAY, all in one batched call."""
    judged, cases = [], []
    for report in reports:
        found = report.found
        if found.asr < min_asr - ASR_TOLERANCE:
            report.note = f"ASR {found.asr:.2f} < {min_asr}: not refined"
            continue
        if found.target not in examples or found.victim not in examples:
            report.note = "no clean examples of the victim or target class: not refined"
            continue
        try:
            stamped = found.trigger.apply(examples[found.victim])
        except InputError as err:
            report.note = f"cannot stamp the victim images: {err}"
            continue
        cases.append(
            TriggerCase(
                examples[found.victim],
                examples[found.target],
                stamped,
                found.victim,
                found.target,
                found.kind,
            )
        )
        judged.append(report)
    if not cases:
        return
    verdicts = compare_triggers(
        model, cases, layer=layer, policy=policy, config=mask_config, seed=seed, progress=progress
    )
    for report, verdict in zip(judged, verdicts):
        report.verdict = verdict
