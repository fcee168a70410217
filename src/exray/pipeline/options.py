"""The settings of a batch scan (`exray scan`, :func:`~exray.pipeline.scan_many`): :class:`ScanOptions`, the
scan's :class:`~exray.pipeline.settings.ScanSettings` plus what loading a model directory and writing its
report need; frozen, validated and picklable, every worker receives it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from exray.differencing import MaskConfig
from exray.errors import ConfigError
from exray.models.runtime import resolve_device
from exray.pipeline.settings import REFINERS, ScanSettings


@dataclass(frozen=True)
class ScanOptions(ScanSettings):
    """:class:`ScanSettings` with the scanner and the refinement *by name* (a batch records its settings),
    and ``trust_pickle`` (load pickled models: runs the file's code), ``report_dir`` (an HTML report per
    model) and ``device`` (where the models run)."""

    mask_config: MaskConfig = field(default_factory=MaskConfig)
    trust_pickle: bool = False
    report_dir: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.scanner, str):
            raise ConfigError(f"a batch scan takes the scanner by name, got {type(self.scanner).__name__}")
        if self.refine is not None and self.refine not in REFINERS:
            raise ConfigError(f"refine must be None or one of {REFINERS}, got {self.refine!r}")
        if self.report_dir is not None and (
            not isinstance(self.report_dir, str | Path) or not str(self.report_dir)
        ):
            raise ConfigError(f"report_dir must be None or a non-empty string, got {self.report_dir!r:.60}")
        if not isinstance(self.trust_pickle, bool):
            raise ConfigError(f"trust_pickle must be true or false, got {self.trust_pickle!r}")
        resolve_device(self.device)  # a GPU asked for and missing fails before any model
        super().__post_init__()

    def scan_settings(self) -> ScanSettings:
        """The :class:`ScanSettings` part: what :func:`exray.pipeline.scan` takes."""
        return ScanSettings(**{f.name: getattr(self, f.name) for f in fields(ScanSettings)})
