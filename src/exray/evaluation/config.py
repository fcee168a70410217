"""Validated settings of an evaluation (``exray evaluate``; spec §4.7, §7.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exray.differencing import MaskConfig
from exray.differencing.policies import POLICY_NAMES
from exray.errors import ConfigError
from exray.evaluation.cache import SCORES_REVISION, settings_key
from exray.models.runtime import resolve_device
from exray.pipeline import Calibration
from exray.pipeline.settings import ScanSettings, check_min_asr, judging_gate
from exray.refinement import METHODS, ExrayMethod, RefinementMethod, get_method, list_methods
from exray.scanners import list_scanners


@dataclass(frozen=True)
class EvaluationConfig:
    """Validated settings of an evaluation.

    ``methods``: refinement methods (rows after the scanner's), registry names of :mod:`exray.refinement`.
    ``scanner``/``scanner_options``: the upstream scanner (``"abs"``: Table 1; ``"nc"``: Table 3).
    ``layer``: the layer of EX-RAY and of the baselines (default: the second-to-last conv block); the
    scanner always inverts at its default layer, so that a layer ablation of the refinement judges the
    same triggers. ``"auto"`` (EX-RAY's per-model choice, :func:`exray.differencing.compare_triggers`) only
    when every method is EX-RAY or a one-sided variant.
    ``policy``/``mask_config``: EX-RAY's decision policy and mask optimisation (also for the one-sided
    variants). ``method_options``: constructor keywords per method, e.g. ``{"ig": {"steps": 20}}`` (options
    of methods not in ``methods`` are validated and otherwise unused).
    ``calibration``: score → P(trojaned); ``calibration_source`` says where it came from (reported).
    ``min_asr``: triggers with a lower ASR are not judged (the pipeline's ``refine_min_asr``); ``None``
    (default): the calibration's flagging threshold, so that every trigger that can flag a model is judged
    (:func:`exray.pipeline.scan.judging_gate`; :attr:`gate` is the value in force).
    ``groups``: evaluate only the clean models and the trojaned models of these trigger groups
    (``"polygon"``, ``"filter"``, …); the others are left out with the reason. ``None`` (default): every
    model. EXP §4.2, Table 3: Neural Cleanse cannot invert Instagram filters, so the paper runs it on the
    clean and polygon-trojaned models only (``groups=("polygon",)``).
    ``device``: where the models run (:func:`~exray.models.runtime.resolve_device`; ``"auto"`` = a CUDA GPU
    if there is one). A GPU computes other floats than the CPU, so a device other than the CPU is part of
    every cache key.
    """

    methods: tuple[str, ...] = tuple(list_methods())
    scanner: str = "abs"
    scanner_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    layer: str | None = None
    policy: str = "official"
    mask_config: MaskConfig = field(default_factory=MaskConfig)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    calibration_source: str = "default"
    min_asr: float | None = None
    trust_pickle: bool = False
    groups: tuple[str, ...] | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        resolve_device(self.device)  # a GPU asked for and missing fails before any model
        if self.groups is not None:
            if not isinstance(self.groups, list | tuple) or not all(
                isinstance(g, str) and g for g in self.groups
            ):
                raise ConfigError(f"groups must be a sequence of trigger-group names, got {self.groups!r}")
            if not self.groups:
                raise ConfigError("groups is empty: pass None to evaluate every model")
            object.__setattr__(self, "groups", tuple(self.groups))
        known = list_methods()
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ConfigError(f"unknown methods {unknown}; choose from {known}")
        if self.layer == "auto":
            others = [m for m in self.methods if not issubclass(METHODS[m], ExrayMethod)]
            if others:
                raise ConfigError(
                    "layer 'auto' picks a layer per model inside EX-RAY; the baselines need one layer: pass "
                    f"a module name or block:K, or evaluate only EX-RAY's rows (not {others})"
                )
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods are listed twice: {list(self.methods)}")
        if self.scanner not in list_scanners():
            raise ConfigError(f"unknown scanner {self.scanner!r}; registered: {list_scanners()}")
        if self.scanner in self.methods:
            raise ConfigError(f"{self.scanner!r} names the scanner row; it is not a method")
        extra = set(self.method_options) - set(known)
        if extra:
            raise ConfigError(f"options given for unknown methods {sorted(extra)}; methods are {known}")
        try:
            check_min_asr(self.min_asr)
        except ConfigError:
            raise ConfigError(f"min_asr must be None or in (0, 1], got {self.min_asr!r}") from None
        if not isinstance(self.calibration, Calibration):
            raise ConfigError(f"calibration must be a Calibration, got {type(self.calibration).__name__}")
        self.settings_for(None)  # the scan settings every row shares, checked as scan() checks them
        for name in {*self.methods, *self.method_options}:
            self.method(name)  # validates every method's options

    @property
    def gate(self) -> float:
        """The ASR from which triggers are judged (``min_asr``, or the calibration's threshold)."""
        return judging_gate(self.min_asr, self.calibration)

    @property
    def rows(self) -> tuple[str, ...]:
        """Row names: the scanner alone first, then the methods."""
        return (self.scanner, *self.methods)

    def method(self, name: str) -> RefinementMethod:
        """The configured refinement method ``name`` (EX-RAY's family gets ``policy`` and ``mask_config``)."""
        options = dict(self.method_options.get(name, {}))
        if name in METHODS and issubclass(METHODS[name], ExrayMethod):
            options.setdefault("policy", self.policy)
            options.setdefault("config", self.mask_config)
        return get_method(name, **options)

    def settings_for(self, method: str | None) -> ScanSettings:
        """The :class:`~exray.pipeline.ScanSettings` of one row as :func:`exray.pipeline.scan` would run it
        on one model: the scanner with its options, ``method`` as the refinement (``None``: the scanner's
        row; the score baselines need thresholds, so only :data:`~exray.pipeline.settings.REFINERS` and
        configured objects), and the shared layer, policy, masks, gate and calibration."""
        refine = None if method is None else self.method(method)
        return ScanSettings(
            scanner=self.scanner,
            scanner_options=dict(self.scanner_options),
            refine=refine,
            seed=self.seed,
            layer=self.layer,
            refine_min_asr=self.min_asr,
            calibration=self.calibration,
        )

    def device_settings(self) -> dict[str, str]:
        """``{"device": ...}`` for a device other than the CPU (part of the cache keys), else nothing, so
        that the keys of CPU results stay what they were."""
        kind = resolve_device(self.device).type  # the device type: "cuda" and "cuda:0" compute alike
        return {} if kind == "cpu" else {"device": kind}

    def scan_settings(self) -> dict[str, Any]:
        return {
            "scanner": self.scanner,
            "options": self.scanner_options,
            "seed": self.seed,
            **self.device_settings(),
        }

    def method_settings(
        self, name: str, scan_key: str, *, legacy: bool = False, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What a method's per-trigger measurements depend on (its cache key): its
        :meth:`~exray.refinement.RefinementMethod.measurement_options` — not EX-RAY's policy, which is
        re-applied to stored masks — and not the gate: a record says down to which ASR it judged the
        triggers, and a lower gate only adds the triggers it lacks. ``legacy``: the settings of the key
        before that (with the gate); ``options``: other options in the key (an older scheme's)."""
        settings = {
            "method": name,
            "options": self.method(name).measurement_options() if options is None else options,
            "seed": self.seed,
            "layer": self.layer,
            "scan": scan_key,
            "revision": SCORES_REVISION,
            **self.device_settings(),
        }
        if legacy or self.layer == "auto":  # auto picks the layer from the triggers judged together: a
            settings["min_asr"] = self.gate  # record is valid only for the gate that chose them
        else:
            settings["gate"] = "per record"
        return settings

    def legacy_method_keys(self, name: str, scan_key: str) -> dict[str, bool]:
        """Keys of a method's records written under older key schemes that are still valid, each with
        whether it held the gate: keyed by the gate, and — for EX-RAY's family — with the policy in the
        options, under any named policy (the masks are the same; the verdict is re-decided)."""
        method = self.method(name)
        schemes = [method.measurement_options()]
        if isinstance(method, ExrayMethod):
            schemes += [{**method.options(), "policy": policy} for policy in POLICY_NAMES]
        keys: dict[str, bool] = {}
        for options in schemes:
            for legacy in (False, True):
                key = settings_key(self.method_settings(name, scan_key, legacy=legacy, options=options))
                keys[key] = keys.get(key, False) or legacy  # held the gate under either scheme
        keys.pop(settings_key(self.method_settings(name, scan_key)), None)
        return keys

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "scanner": self.scanner,
            "scanner_options": self.scanner_options,
            "seed": self.seed,
            "layer": self.layer,
            "policy": self.policy,
            "mask_config": self.mask_config.to_dict(),
            "method_options": {k: self.method(k).options() for k in self.methods},
            "calibration": self.calibration.to_dict(),
            "calibration_source": self.calibration_source,
            "min_asr": self.min_asr,
            "gate": self.gate,
            "groups": None if self.groups is None else list(self.groups),
            "device": str(resolve_device(self.device)),
        }
