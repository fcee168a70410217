"""Neural Cleanse (Wang et al., S&P'19; spec §3): universal per-label inversion with the MAD outlier test,
and the label-specific (victim → target) variant whose triggers EX-RAY refines (spec §3.3 [CHOICE]).

The optimisation is the reference one (spec §3.1): a tanh-parameterised H×W mask and 3×H×W pattern,
CE toward the target + cost·Σmask, Adam(0.1, β = (0.5, 0.9)), the cost schedule (start at 0; set to
``init_cost`` after ``patience`` successful epochs; ×``cost_multiplier`` after ``patience`` successful
epochs in a row, ÷``cost_multiplier``^1.5 after ``patience`` failures), best-so-far = the smallest mask
with attack accuracy ≥ ``success``, and the early stop. One NC "step" (31 mini-batches of 32 of a 1000-image
set) becomes one epoch over the task's images here: with 10–20 clean examples per class there are far
fewer images, so epochs are cheap and the same patience values apply per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from exray.errors import ConfigError, InputError
from exray.metrics.robust import mad_anomaly
from exray.models.layers import resolve_layer
from exray.models.runtime import frozen
from exray.options import MAX_OPTION, Options, check_choice, check_real
from exray.scanners.base import StageClock, StagedScanner, Stages, register_scanner
from exray.scanners.common import Examples, check_examples, subset
from exray.scanners.inversion import InversionOutcome, InversionTask
from exray.scanners.nc_inversion import NCInversion, PairInversion
from exray.scanners.result import FoundTrigger, attack_rates, best_source, stamped_predictions
from exray.scanners.stimulation import profile
from exray.utils import derive_seed, torch_generator

NCMode = Literal["label_specific", "universal"]
PairFilter = Literal["prior", "short_run"]
PairDetection = Literal["bound", "mad"]


@dataclass(frozen=True)
class NCConfig(Options):
    """Neural Cleanse options (spec §3.1 defaults unless noted).

    ``mode``: ``"label_specific"`` (victim → target pairs; the default, since its triggers are what EX-RAY
    refines) or ``"universal"`` (one trigger per label over all other classes' images; MAD test).

    Optimisation: ``lr`` (0.1), ``betas`` ((0.5, 0.9)), ``init_cost`` (1e-3), ``patience`` (5, the GTSRB
    driver), ``cost_multiplier`` (2), ``early_stop_patience`` (25 = 5·patience), ``success`` (0.99).
    ``epochs``: **150** (reference: at most 1000 steps of 31 batches of 32). One epoch is one pass over the
    task's images (``victim_images`` of one class, or ``images_per_task`` for a universal task), so an
    epoch sees as many images as ~1/3–2 reference batches. With patience 5 the cost reaches the scale of
    the CE term after ~40 epochs; on the tiny zoo about a quarter of the tasks early-stopped before 150 and
    the rest had found their valid masks by then. 150 keeps a label-specific scan of a 32×32 model to
    ~20–60 s on 2 cores; raise it for tighter norms.
    ``batch_size`` (32). ``images_per_task``: images of a universal task, drawn evenly from the non-target
    classes (**60**); ``victim_images``: images of a label-specific task, from its victim class (**20**,
    or all of them when the class has fewer). ``tasks_per_run`` (**30**: tasks optimised together; results
    do not depend on it).

    Detection: ``mad_threshold`` (2). Label-specific pairs: ``pairs="prior"`` — per victim, the labels of
    its ABS label prior (spec §2.2) plus its ``targets_per_victim`` (2) most frequent runner-up labels;
    ``"short_run"`` — every pair for ``prefilter_epochs`` (30) epochs, keeping the ``targets_per_victim``
    targets with the smallest masks. A pair is reported if its trigger flips ≥ ``success`` of the victim's
    examples and its mask norm is at most ``max_norm_fraction`` (default: ABS's 1600/224² ≈ 3.19 %) of the
    image area. ``detection``: ``"bound"`` (the default; the ASR and size criteria alone, as EX-RAY's
    TrojAI setup) or ``"mad"`` (spec §3.3's other option: a pair passing them is reported only if the MAD
    test over the norms of every inverted pair also flags it, anomaly index > ``mad_threshold``).
    """

    mode: NCMode = "label_specific"
    epochs: int = 150
    batch_size: int = 32
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.9)
    init_cost: float = 1e-3
    patience: int = 5
    cost_multiplier: float = 2.0
    early_stop_patience: int = 25
    success: float = 0.99
    images_per_task: int = 60
    victim_images: int = 20
    tasks_per_run: int = 30
    mad_threshold: float = 2.0
    pairs: PairFilter = "prior"
    targets_per_victim: int = 2
    prefilter_epochs: int = 30
    prior_labels: int = 3
    prior_threshold: float = 0.8
    max_norm_fraction: float = 1600 / 224**2
    detection: PairDetection = "bound"

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        check_choice("mode", self.mode, ("label_specific", "universal"))
        check_choice("pairs", self.pairs, ("prior", "short_run"))
        check_choice("detection", self.detection, ("bound", "mad"))
        if self.mode == "universal" and self.detection != "bound":
            raise ConfigError(
                "detection applies to label-specific pairs; universal NC always uses its MAD test"
            )
        self._positive_int(
            "epochs",
            "batch_size",
            "patience",
            "early_stop_patience",
            "images_per_task",
            "victim_images",
            "tasks_per_run",
            "targets_per_victim",
            "prefilter_epochs",
            "prior_labels",
        )
        self._positive("lr", "init_cost", "mad_threshold")
        check_real("cost_multiplier", self.cost_multiplier, 1.0, MAX_OPTION, low_open=True)
        if len(self.betas) != 2:
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for beta in self.betas:
            check_real("betas' entry", beta, 0.0, 1.0, high_open=True)
        self._fraction("success", "prior_threshold")
        self._fraction("max_norm_fraction", closed=False)


@register_scanner("nc")
class NeuralCleanseScanner(StagedScanner):
    """Neural Cleanse, label-specific (default) or universal (``mode="universal"``)."""

    name = "nc"
    title = "Neural Cleanse"
    config_class = NCConfig
    config: NCConfig

    def _inverter(self, epochs: int, label: str) -> NCInversion:
        cfg = self.config
        return NCInversion(
            init_cost=cfg.init_cost,
            patience=cfg.patience,
            cost_multiplier=cfg.cost_multiplier,
            early_stop_patience=cfg.early_stop_patience,
            success=cfg.success,
            epochs=epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            betas=cfg.betas,
            progress_label=label,
        )

    def _run(
        self, model: nn.Module, tasks: list[InversionTask], epochs: int, progress: bool
    ) -> list[InversionOutcome]:
        inverter = self._inverter(epochs, "Neural Cleanse")
        return inverter.run_in_chunks(model, tasks, self.config.tasks_per_run, progress=progress)

    @property
    def result_name(self) -> str:
        return "nc_universal" if self.config.mode == "universal" else "nc"

    def check_scan(self, data: Examples, layer: str | None) -> None:
        """``layer``: where the label prior of ``pairs="prior"`` is profiled (default: the second-to-last
        block); Neural Cleanse inverts at the input, so any other mode refuses a layer, never ignores it."""
        prior = self.config.mode == "label_specific" and self.config.pairs == "prior"
        if layer is not None and not prior:
            raise ConfigError(
                "Neural Cleanse inverts triggers at the input: an inner layer is used only for the label "
                f"prior of label-specific pairs='prior', not with mode={self.config.mode!r}, "
                f"pairs={self.config.pairs!r}"
            )

    def run_stages(
        self,
        model: nn.Module,
        data: Examples,
        *,
        layer: str | None,
        seed: int,
        progress: bool,
        clock: StageClock,
    ) -> Stages:
        if self.config.mode == "universal":
            triggers, diagnostics = self._universal(model, data, seed, progress, clock)
        else:
            triggers, diagnostics = self._label_specific(model, data, seed, progress, layer, clock)
        return Stages(triggers, diagnostics, diagnostics.get("prior_layer"))

    def _universal(
        self, model: nn.Module, data: Examples, seed: int, progress: bool, clock: StageClock
    ) -> tuple[list[FoundTrigger], dict[str, Any]]:
        """One trigger per label over the other classes' images; MAD over the norms (spec §3.1–3.2)."""
        cfg = self.config
        tasks = []
        for target in range(data.num_classes):
            sources = [c for c in data.classes if c != target]
            if not sources:
                raise InputError(f"label {target} has no examples of other classes to flip")
            share = max(1, cfg.images_per_task // len(sources))
            images = torch.cat(
                [
                    subset(data.by_class[c], share, torch_generator(derive_seed(seed, "nc-images", c)))
                    for c in sources
                ]
            )
            tasks.append(InversionTask(images, target, -1, -1, derive_seed(seed, "nc-universal", target)))
        outcomes = self._run(model, tasks, cfg.epochs, progress)
        clock.lap("inversion")

        norms = [o.info["norm"] for o in outcomes]
        mad = mad_anomaly(norms, cfg.mad_threshold)
        triggers = []
        for target in mad["flagged"]:
            outcome = outcomes[target]
            trigger = NCInversion.trigger(outcome.params)
            per_class, universal = attack_rates(stamped_predictions(model, trigger, data), target)
            victim, asr = best_source(per_class)
            details = {
                "norm": outcome.info["norm"],
                "label_anomaly_index": mad["label_index"][target],
                "per_class_asr": {str(k): v for k, v in per_class.items()},
                "epochs_run": outcome.epochs_run,
            }
            triggers.append(
                FoundTrigger(trigger, victim, target, "patch", asr, float(trigger.size), universal, details)
            )
        clock.lap("validation")
        diagnostics = {
            "mode": "universal",
            "norms": norms,
            "found": [o.info["found"] for o in outcomes],
            "epochs_run": [o.epochs_run for o in outcomes],
            **mad,
        }
        return triggers, diagnostics

    def _pairs(
        self, model: nn.Module, data: Examples, seed: int, progress: bool, layer: str | None
    ) -> tuple[list[tuple[int, int]], dict[str, Any]]:
        """The (victim, target) pairs to invert (spec §3.3 [CHOICE])."""
        cfg = self.config
        if cfg.pairs == "prior":
            sample = data.by_class[data.classes[0]]
            name = resolve_layer(model, layer, sample)
            prof = profile(
                model,
                data,
                name,
                prior_labels=cfg.prior_labels,
                prior_threshold=cfg.prior_threshold,
            )
            pairs = []
            for victim in data.classes:
                ranked = sorted(prof.runner_ups[victim].items(), key=lambda item: (-item[1], item[0]))
                chosen = [t for t in prof.label_prior[victim] if t != victim]
                extra = [t for t, _ in ranked if t != victim and t not in chosen]
                chosen += extra[: cfg.targets_per_victim]
                pairs.extend((victim, t) for t in chosen)
            return pairs, {
                "label_prior": {str(k): v for k, v in prof.label_prior.items()},
                "prior_layer": name,
            }
        every = [(v, t) for v in data.classes for t in range(data.num_classes) if t != v]
        outcomes = self._run(model, self._pair_tasks(data, every, seed), cfg.prefilter_epochs, progress)
        pairs = []
        for victim in data.classes:
            scored = [
                ((not o.info["found"], o.info["norm"]), t)
                for (v, t), o in zip(every, outcomes)
                if v == victim
            ]
            pairs.extend((victim, t) for _, t in sorted(scored)[: cfg.targets_per_victim])
        return pairs, {"prefilter_norms": [[v, t, o.info["norm"]] for (v, t), o in zip(every, outcomes)]}

    def _pair_tasks(self, data: Examples, pairs: list[tuple[int, int]], seed: int) -> list[InversionTask]:
        tasks = []
        for victim, target in pairs:
            images = subset(
                data.by_class[victim],
                self.config.victim_images,
                torch_generator(derive_seed(seed, "nc-images", victim)),
            )
            tasks.append(
                InversionTask(images, target, victim, -1, derive_seed(seed, "nc-pair", victim, target))
            )
        return tasks

    def invert_pairs(
        self,
        model: nn.Module,
        examples: Mapping[int, torch.Tensor],
        pairs: Sequence[tuple[int, int]] | None = None,
        *,
        seed: int = 0,
        progress: bool = False,
    ) -> list[PairInversion]:
        """Neural Cleanse's smallest trigger for each (victim, target) pair — every ordered pair of the
        examples' classes by default — with its mask norm (the trigger size in pixels, the EX-RAY paper's
        Tables 21-22) and its ASR on the victim's examples; no bound or MAD test applied."""
        data = check_examples(model, examples)
        if pairs is None:
            pairs = [(v, t) for v in data.classes for t in data.classes if t != v]
        bad = [
            p for p in pairs if p[0] not in data.by_class or not 0 <= p[1] < data.num_classes or p[0] == p[1]
        ]
        if bad:
            raise InputError(f"pairs must be (a victim with examples, another class) of the model, got {bad}")
        with frozen(model):
            return self._invert(model, data, list(pairs), seed, progress)

    def _invert(
        self, model: nn.Module, data: Examples, pairs: list[tuple[int, int]], seed: int, progress: bool
    ) -> list[PairInversion]:
        outcomes = self._run(model, self._pair_tasks(data, pairs, seed), self.config.epochs, progress)
        inverted = []
        for (victim, target), outcome in zip(pairs, outcomes, strict=True):
            trigger = NCInversion.trigger(outcome.params)
            per_class, universal = attack_rates(stamped_predictions(model, trigger, data), target)
            inverted.append(
                PairInversion(
                    victim, target, trigger, outcome.info["norm"], per_class.get(victim, 0.0), universal,
                    {str(k): v for k, v in per_class.items()}, outcome.epochs_run,
                )
            )  # fmt: skip
        return inverted

    def _label_specific(
        self,
        model: nn.Module,
        data: Examples,
        seed: int,
        progress: bool,
        layer: str | None,
        clock: StageClock,
    ) -> tuple[list[FoundTrigger], dict[str, Any]]:
        """Per-pair inversion on the victim's images; pairs that flip ≥ ``success`` of the victim's examples
        with a mask norm within the bound (and, with ``detection="mad"``, an outlying norm among the pairs')
        are reported (spec §3.3 [CHOICE])."""
        cfg = self.config
        pairs, selection = self._pairs(model, data, seed, progress, layer)
        clock.lap("pair_selection")
        inverted = self._invert(model, data, pairs, seed, progress)
        clock.lap("inversion")

        height, width = data.image_size
        bound = cfg.max_norm_fraction * height * width
        mad = mad_anomaly([p.norm for p in inverted], cfg.mad_threshold) if inverted else None
        outliers = set(mad["flagged"]) if mad is not None else set()
        triggers, records = [], []
        for i, pair in enumerate(inverted):
            index = mad["label_index"][i] if mad is not None else 0.0
            passed = (
                pair.asr >= cfg.success and pair.norm <= bound and (cfg.detection == "bound" or i in outliers)
            )
            records.append(
                {
                    "victim": pair.victim,
                    "target": pair.target,
                    "norm": pair.norm,
                    "asr": pair.asr,
                    "anomaly_index": index,
                    "outlier": i in outliers,
                    "passed": passed,
                    "epochs_run": pair.epochs_run,
                }
            )
            if passed:
                triggers.append(pair.found(pair_anomaly_index=index))
        clock.lap("validation")
        diagnostics = {
            "mode": "label_specific",
            "norm_bound": bound,
            **selection,
            "pairs": records,
            "mad": mad,
        }
        return triggers, diagnostics


@register_scanner("nc_universal")
def _nc_universal(**options: Any) -> NeuralCleanseScanner:
    """``get_scanner("nc_universal")`` = Neural Cleanse with ``mode="universal"``."""
    if "mode" in options:
        raise ConfigError("'nc_universal' fixes mode='universal'; use get_scanner('nc', mode=...) instead")
    return NeuralCleanseScanner(mode="universal", **options)
