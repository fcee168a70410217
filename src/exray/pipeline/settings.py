"""The settings of a scan (issue 21 §2): one frozen, validated :class:`ScanSettings` that
:func:`exray.pipeline.scan` takes (as an object or as its keywords), that a batch scan's
:class:`~exray.pipeline.ScanOptions` extends with what loading a model directory needs, and that the CLI
builds once.

The judging gate (:func:`judging_gate`) and the victim rules are explained in :mod:`exray.pipeline.scan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exray.differencing import MaskConfig
from exray.differencing.policies import Policy, resolve_policy
from exray.errors import ConfigError
from exray.options import check_layer
from exray.pipeline.calibration import Calibration
from exray.refinement import RefinementMethod, get_method
from exray.scanners import Scanner, get_scanner
from exray.utils import check_seed

#: Refinement methods usable by name: EX-RAY and its one-sided variants decide by their own rule.
REFINERS = ("exray", "exray_v2t", "exray_t2v")
#: Which victim classes a trigger is judged with (:mod:`exray.pipeline.scan`).
VICTIM_RULES = ("found", "flipped")


@dataclass(frozen=True)
class ScanSettings:
    """Everything that decides a scan's numbers besides the model and its examples.

    ``scanner``: a registry name (``"abs"``, ``"nc"``, …, configured with ``scanner_options``) or a scanner
    object. ``refine``: ``"exray"`` (default) prunes natural triggers, ``None`` reports the scanner alone; a
    name of :data:`REFINERS` or a configured :class:`~exray.refinement.RefinementMethod` object (a score
    baseline with its thresholds); ``policy`` and ``mask_config`` configure a refinement given by name.
    ``layer``: the refinement's layer (default: the second-to-last conv block, EXA Table 11);
    ``scanner_layer``: the scanner's (default: its own). ``victims``: one of :data:`VICTIM_RULES`.
    ``refine_min_asr``: the ASR from which triggers are judged (default: the calibration's threshold,
    :func:`judging_gate`). ``calibration``: score → P(trojaned). ``seed``: every random choice derives
    from it.
    """

    scanner: str | Scanner = "abs"
    scanner_options: dict[str, Any] = field(default_factory=dict)
    refine: str | RefinementMethod | None = "exray"
    seed: int = 0
    layer: str | None = None
    scanner_layer: str | None = None
    policy: str | Policy = "official"
    mask_config: MaskConfig | None = None
    victims: str = "found"
    refine_min_asr: float | None = None
    calibration: Calibration = field(default_factory=Calibration)

    def __post_init__(self) -> None:
        if self.calibration is None:  # scan()'s keywords have always taken None for the defaults
            object.__setattr__(self, "calibration", Calibration())
        if self.scanner_options is None:
            object.__setattr__(self, "scanner_options", {})
        check_victim_rule(self.victims)
        check_min_asr(self.refine_min_asr)
        check_seed(self.seed)
        check_layer("layer", self.layer)
        check_layer("scanner_layer", self.scanner_layer)
        if not isinstance(self.scanner_options, dict):
            raise ConfigError(f"scanner_options must be a dict, got {type(self.scanner_options).__name__}")
        if self.mask_config is not None and not isinstance(self.mask_config, MaskConfig):
            raise ConfigError(f"mask_config must be a MaskConfig, got {type(self.mask_config).__name__}")
        if not isinstance(self.calibration, Calibration):
            raise ConfigError(f"calibration must be a Calibration, got {type(self.calibration).__name__}")
        resolve_policy(self.policy)
        if isinstance(self.scanner, Scanner):
            if self.scanner_options:
                raise ConfigError(
                    "scanner_options configure a scanner given by name; the scanner object given carries "
                    "its own (get_scanner(name, **options))"
                )
        else:
            self.build_scanner()  # bad scanner settings fail here, before any model
        self.refinement()  # and bad refinement settings

    def build_scanner(self) -> Scanner:
        """The configured scanner."""
        if isinstance(self.scanner, Scanner):
            return self.scanner
        return get_scanner(self.scanner, **self.scanner_options)

    def refinement(self) -> RefinementMethod | None:
        """The configured refinement method, or ``None`` for the scanner alone."""
        return resolve_refiner(self.refine, self.policy, self.mask_config)

    @property
    def scanner_name(self) -> str:
        return self.scanner if isinstance(self.scanner, str) else type(self.scanner).__name__

    @property
    def gate(self) -> float:
        """The ASR from which triggers are judged (:func:`judging_gate`)."""
        return judging_gate(self.refine_min_asr, self.calibration)


def check_victim_rule(victims: str) -> None:
    """Raise ConfigError unless ``victims`` is one of :data:`VICTIM_RULES`."""
    if victims not in VICTIM_RULES:
        raise ConfigError(f"victims must be one of {VICTIM_RULES}, got {victims!r}")


def check_min_asr(min_asr: float | None) -> None:
    """Raise ConfigError unless ``min_asr`` (the ASR gate before refinement) is None or in (0, 1]."""
    if min_asr is None:
        return
    if isinstance(min_asr, bool) or not isinstance(min_asr, int | float) or not 0 < min_asr <= 1:
        raise ConfigError(f"refine_min_asr must be None or a number in (0, 1], got {min_asr!r}")


def judging_gate(min_asr: float | None, calibration: Calibration) -> float:
    """The ASR from which a trigger is judged: ``min_asr``, or by default the calibration's flagging
    threshold (clipped to (0, 1]) — then every trigger strong enough to flag its model is judged first, and
    no weaker one could flag it (:mod:`exray.pipeline.scan`). An explicit ``min_asr`` above the threshold
    leaves the triggers in between unjudged yet able to flag the model."""
    if min_asr is not None:
        return float(min_asr)
    return float(min(max(calibration.threshold, 1e-6), 1.0))


def resolve_refiner(
    refine: str | RefinementMethod | None, policy: str | Policy, mask_config: MaskConfig | None
) -> RefinementMethod | None:
    """The refinement method ``refine`` names (configured with ``policy``/``mask_config``), or ``refine``."""
    if isinstance(refine, RefinementMethod):
        if policy != "official" or mask_config is not None:
            raise ConfigError(
                f"policy and mask_config configure a refinement given by name; the {refine.title} object "
                "given carries its own settings (get_method(name, policy=..., config=...))"
            )
        return refine
    if refine is None:
        return refine
    if refine not in REFINERS:
        raise ConfigError(
            f"refine must be None, a RefinementMethod or one of {REFINERS}, got {refine!r} (score baselines "
            "need thresholds: pass get_method(name).with_thresholds(...))"
        )
    return get_method(refine, policy=policy, config=mask_config)
