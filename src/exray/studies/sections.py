"""The sections the EX-RAY study specs share: the population (``zoo``, inline or a file) and the ABS + EX-RAY
settings (``scan``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.differencing import PRECISION_SETTINGS, MaskConfig, resolve_precision
from exray.differencing.policies import POLICY_NAMES
from exray.errors import ConfigError
from exray.specfile import Section, built, load_document
from exray.zoo.spec import SHIPPED_SPECS, ZooSpec
from exray.zoo.spec import parse_spec as parse_zoo

#: Where a zoo spec named by path is looked up when it is not next to the study spec.
SHIPPED_ZOOS = SHIPPED_SPECS


def load_zoo(value: Any, base: Path | None, kind: str) -> ZooSpec:
    """A study's ``zoo``: an inline zoo spec mapping, or a path relative to the study spec (``base``) or the
    name of a shipped spec."""
    if isinstance(value, str):
        candidates = [Path(value)] if Path(value).is_absolute() else []
        if base is not None:
            candidates.append(base / value)
        candidates.append(SHIPPED_ZOOS / Path(value).name)
        for path in candidates:
            if path.is_file():
                return parse_zoo(load_document(path, "zoo spec"), default_name=path.stem)
        raise ConfigError(f"{kind}: 'zoo': spec file {value!r} not found next to the study spec or shipped")
    return built(kind, "zoo", parse_zoo, value)


@dataclass(frozen=True)
class ScanSpec:
    layer: str = "block:-2"
    policy: str = "r2"
    precision: str = "fp32"
    patience: int = 20
    scanner_options: dict[str, Any] = field(default_factory=lambda: {"epochs": 20, "top_n_neurons": 2})

    def mask_config(self, device: str = "cpu") -> MaskConfig:
        """The mask settings as they run on ``device`` (``precision: auto`` resolved there)."""
        return MaskConfig(precision=resolve_precision(self.precision, device), patience=self.patience)

    def settings(self, device: str = "cpu") -> dict[str, Any]:
        """:meth:`to_dict` with the precision that runs on ``device``, for cache keys and records."""
        return {**self.to_dict(), "precision": self.mask_config(device).precision}

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "policy": self.policy,
            "precision": self.precision,
            "patience": self.patience,
            "scanner_options": dict(self.scanner_options),
        }


def parse_scan(top: Section, kind: str) -> ScanSpec:
    """A study spec's ``scan`` section: ABS + EX-RAY settings, ABS's options checked by building it."""
    scan = top.section("scan", ("layer", "policy", "precision", "patience", "scanner_options"))
    options = scan.get("scanner_options", ScanSpec().scanner_options)
    if not isinstance(options, dict):
        raise scan.fail("scanner_options", f"must be a mapping of ABS options, got {options!r}")
    layer = scan.get("layer", "block:-2")
    if not isinstance(layer, str) or not layer:
        raise scan.fail("layer", f"must be a module name, block:K or auto, got {layer!r}")
    built(kind, "scan.scanner_options", check_abs, dict(options))
    return ScanSpec(
        layer=layer,
        policy=scan.choice("policy", "r2", POLICY_NAMES),
        precision=scan.choice("precision", "fp32", PRECISION_SETTINGS),
        patience=scan.int("patience", 20, 1, 10_000),
        scanner_options=dict(options),
    )


def check_abs(options: dict[str, Any]) -> None:
    from exray.scanners import get_scanner

    get_scanner("abs", **options)
