"""The settings of a batch scan (`exray scan`, :func:`~exray.pipeline.scan_many`): one frozen, validated
:class:`ScanOptions` that every worker receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.differencing import MaskConfig
from exray.differencing.policies import resolve_policy
from exray.errors import ConfigError
from exray.models.runtime import resolve_device
from exray.pipeline.calibration import Calibration
from exray.pipeline.scan import REFINERS, check_min_asr, check_victim_rule
from exray.scanners import get_scanner
from exray.utils import check_seed


@dataclass(frozen=True)
class ScanOptions:
    """Everything a worker needs to scan one model directory (picklable, validated)."""

    scanner: str = "abs"
    refine: str | None = "exray"
    seed: int = 0
    layer: str | None = None
    scanner_layer: str | None = None
    policy: str = "official"
    victims: str = "found"
    refine_min_asr: float | None = None
    mask_config: MaskConfig = field(default_factory=MaskConfig)
    calibration: Calibration = field(default_factory=Calibration)
    scanner_options: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    report_dir: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.refine is not None and self.refine not in REFINERS:
            raise ConfigError(f"refine must be None or one of {REFINERS}, got {self.refine!r}")
        check_victim_rule(self.victims)
        check_min_asr(self.refine_min_asr)
        check_seed(self.seed)
        resolve_policy(self.policy)
        for name in ("layer", "scanner_layer", "report_dir"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str | Path) or not str(value)):
                raise ConfigError(f"{name} must be None or a non-empty string, got {value!r:.60}")
        expected = {"mask_config": MaskConfig, "calibration": Calibration, "scanner_options": dict}
        for name, kind in expected.items():
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(
                    f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}"
                )
        if not isinstance(self.trust_pickle, bool):
            raise ConfigError(f"trust_pickle must be true or false, got {self.trust_pickle!r}")
        resolve_device(self.device)  # a GPU asked for and missing fails before any model
        get_scanner(self.scanner, **self.scanner_options)  # bad scanner settings fail before any model

    def scan_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`exray.pipeline.scan` these options stand for."""
        return {
            "scanner": self.scanner,
            "refine": self.refine,
            "seed": self.seed,
            "layer": self.layer,
            "scanner_layer": self.scanner_layer,
            "policy": self.policy,
            "victims": self.victims,
            "refine_min_asr": self.refine_min_asr,
            "mask_config": self.mask_config,
            "calibration": self.calibration,
            "scanner_options": self.scanner_options,
        }
