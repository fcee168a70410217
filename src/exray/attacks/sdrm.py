"""The SDRM / ML-MMDR regulariser (Xia et al.; spec §6.1): a multi-level MMD penalty that pulls the
representations of poisoned samples onto those of clean target-class samples while the backdoor trains.

At every training step, for each hooked *level* (a module whose output is read), the squared MMD
(multi-bandwidth Gaussian kernel, :func:`exray.metrics.mmd`) between the batch's clean samples of the
target class and its poisoned samples is computed on the flattened per-sample features; the levels are
summed (0 when either group is empty in the batch — or has fewer than two samples with the unbiased
estimator) and the sum, weighted by λ (default 0.1), is added to
the cross-entropy. ``mode="all"`` is ML-MMDR (every level), ``mode="last"`` the single-level SL-MMDR
(the last level only).

**Levels.** The reference code hooks ReLUs 4, 6 and 8 of VGG-11, the ends of its last three stages. We
derive stage ends for any model (:func:`stage_outputs`): a probe forward pass records the execution order
and output shapes (:func:`exray.models.layers.probe_modules`); the search descends from the root to the
level where several children hold convolutions (:func:`exray.models.layers.block_children`, as for
:func:`exray.models.default_layer`); each convolution-holding child gets the spatial resolution of the
*last* convolution it runs; a *stage* is a maximal run of consecutive convolution-holding children of
equal resolution, and its output is the output of its last child. The default levels are the last three
stage outputs. For the registry (``tests/attacks/test_sdrm_levels.py``):

* ``vgg11_bn``: ``features.5``, ``features.8``, ``features.11`` — conv-BN-ReLU 4, 6, 8 (the reference);
* ``resnet18``/``resnet34``: ``layer2``, ``layer3``, ``layer4``;
* ``mobilenetv2``: ``features.stage3``, ``features.stage5``, ``features.head`` (16×16, 8×8, 4×4 ends);
* ``cnn``: ``features.2``, ``features.4``, ``features.6``;
* ``densenet``: ``features.stage1``, ``features.stage2``, ``features.stage3`` (dense block + transition);
* ``nin``: ``stage1``, ``stage2``, ``stage3``; ``inception``: the last block at each of its resolutions.

**Hooks.** Features are read with :func:`exray.models.capture` inside the training step: hooks exist only
during the step's forward pass and are removed afterwards (also on errors), and a level module that runs
twice in one forward pass (a reused module) is an error, never silently counted twice. The reference
README notes that the authors' paper models were trained with explicit feature returns rather than hooks;
the loss is the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from exray.errors import ConfigError, InputError, LayerError
from exray.metrics import mmd
from exray.metrics.distances import MMDEstimator
from exray.models import get_module
from exray.models.layers import block_children, probe_modules
from exray.train import Batch, LossTerm

Mode = Literal["all", "last"]

#: Number of stage outputs regularised by default (the reference's s1, s2, s3).
DEFAULT_NUM_LEVELS = 3


def stage_outputs(model: nn.Module, sample: torch.Tensor) -> tuple[str, ...]:
    """Module names of the outputs of every stage of ``model``, first to last (see the module docstring).

    ``sample``: any input batch of the model's input size (one image is run, in eval mode, without
    gradients; the model's mode is restored).
    """
    probe = probe_modules(model, sample)
    try:
        blocks = block_children(model, probe)
    except LayerError:  # the only one it raises: no convolution at all
        raise LayerError("the model has no convolutional layer; pass the SDRM levels by name") from None
    resolution: dict[str, tuple[int, ...]] = {}
    for name, _members in blocks:
        inside = [shape[2:] for conv, shape in probe.convs if conv == name or conv.startswith(name + ".")]
        resolution[name] = tuple(inside[-1])
    names = list(resolution)
    ends = [n for n, nxt in itertools.pairwise(names) if resolution[n] != resolution[nxt]] + names[-1:]
    for name in ends:
        if probe.calls.get(name, 0) != 1 or len(probe.shapes.get(name, ())) != 4:
            raise LayerError(
                f"stage output {name!r} is not a feature map produced once per forward pass; "
                "pass the SDRM levels by name"
            )
    return tuple(ends)


def default_levels(
    model: nn.Module, sample: torch.Tensor, count: int = DEFAULT_NUM_LEVELS
) -> tuple[str, ...]:
    """The last ``count`` stage outputs of ``model`` (all of them if it has fewer stages)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"the number of levels must be an int >= 1, got {count!r}")
    return stage_outputs(model, sample)[-count:]


@dataclass(frozen=True)
class SDRMConfig:
    """Options of the SDRM regulariser (spec §6.1), validated.

    ``weight``: λ, the weight of the summed MMD in the loss (reference default 0.1). ``levels``: module
    names (``model.named_modules()``) whose outputs are regularised, or ``None`` for the last
    ``num_levels`` stage outputs (:func:`default_levels`). ``mode``: ``"all"`` regularises every level
    (ML-MMDR), ``"last"`` only the last one (SL-MMDR). ``target_class``: the attack's target; ``None``
    takes, in every batch, each label carried by poisoned rows as a target (several attacks at once).
    ``estimator``, ``kernel_num``, ``kernel_mul``: the MMD of :func:`exray.metrics.mmd` (the reference
    uses the biased estimator with 5 bandwidths, multiplier 2).
    """

    weight: float = 0.1
    levels: tuple[str, ...] | None = None
    num_levels: int = DEFAULT_NUM_LEVELS
    mode: Mode = "all"
    target_class: int | None = None
    estimator: MMDEstimator = "biased"
    kernel_num: int = 5
    kernel_mul: float = 2.0

    def __post_init__(self) -> None:
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1e6:
            raise ConfigError(f"SDRM weight (lambda) must be a number in [0, 1e6], got {weight!r}")
        if self.levels is not None:
            if isinstance(self.levels, str):
                raise ConfigError("SDRM levels must be a list of module names, not a single string")
            levels = tuple(self.levels)
            if (
                not levels
                or not all(isinstance(n, str) and n for n in levels)
                or len(set(levels)) != len(levels)
            ):
                raise ConfigError(f"SDRM levels must be distinct non-empty module names, got {list(levels)}")
            object.__setattr__(self, "levels", levels)
        if isinstance(self.num_levels, bool) or not isinstance(self.num_levels, int) or self.num_levels < 1:
            raise ConfigError(f"SDRM num_levels must be an int >= 1, got {self.num_levels!r}")
        if self.mode not in ("all", "last"):
            raise ConfigError(f"SDRM mode must be 'all' (ML-MMDR) or 'last' (SL-MMDR), got {self.mode!r}")
        if self.target_class is not None and (
            isinstance(self.target_class, bool)
            or not isinstance(self.target_class, int)
            or self.target_class < 0
        ):
            raise ConfigError(f"SDRM target_class must be an int >= 0 or None, got {self.target_class!r}")
        if self.estimator not in ("biased", "unbiased"):
            raise ConfigError(f"SDRM estimator must be 'biased' or 'unbiased', got {self.estimator!r}")
        if isinstance(self.kernel_num, bool) or not isinstance(self.kernel_num, int) or self.kernel_num < 1:
            raise ConfigError(f"SDRM kernel_num must be an int >= 1, got {self.kernel_num!r}")
        if not self.kernel_mul > 0:
            raise ConfigError(f"SDRM kernel_mul must be > 0, got {self.kernel_mul!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "levels": None if self.levels is None else list(self.levels),
            "num_levels": self.num_levels,
            "mode": self.mode,
            "target_class": self.target_class,
            "estimator": self.estimator,
            "kernel_num": self.kernel_num,
            "kernel_mul": self.kernel_mul,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SDRMConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"SDRM options must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown SDRM options {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if values.get("levels") is not None:
            levels = values["levels"]
            values["levels"] = (levels,) if isinstance(levels, str) else tuple(levels)
        return cls(**values)

    def resolve_levels(self, model: nn.Module, sample: torch.Tensor) -> tuple[str, ...]:
        """The module names this configuration regularises on ``model`` (after ``mode``)."""
        if self.levels is None:
            levels = default_levels(model, sample, self.num_levels)
        else:
            for name in self.levels:
                get_module(model, name)
            levels = self.levels
        return levels[-1:] if self.mode == "last" else levels

    def regularizer(self, model: nn.Module, sample: torch.Tensor) -> SDRMRegularizer:
        """The loss function for ``model`` (levels resolved with a probe pass on ``sample``)."""
        return SDRMRegularizer(
            levels=self.resolve_levels(model, sample),
            target_class=self.target_class,
            estimator=self.estimator,
            kernel_num=self.kernel_num,
            kernel_mul=self.kernel_mul,
        )

    def loss_term(self, model: nn.Module, sample: torch.Tensor, name: str = "sdrm") -> LossTerm:
        """The :class:`~exray.train.LossTerm` to pass to :func:`exray.train.train_model`."""
        regularizer = self.regularizer(model, sample)
        return LossTerm(regularizer, layers=regularizer.levels, weight=float(self.weight), name=name)


@dataclass(frozen=True)
class SDRMRegularizer:
    """Σ over ``levels`` of MMD²(clean target-class features, poisoned features) of one batch.

    Called by the training loop as ``fn(batch, features)``; also usable on its own. Rows flagged
    ``batch.poisoned`` whose training label is a target form the poisoned group; rows not poisoned whose
    *true* label is that target form the clean group (so clean-label poison never counts as clean).
    """

    levels: tuple[str, ...]
    target_class: int | None = None
    estimator: MMDEstimator = "biased"
    kernel_num: int = 5
    kernel_mul: float = 2.0
    _kernel: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError("SDRM needs at least one level")
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(
            self,
            "_kernel",
            {"estimator": self.estimator, "kernel_num": self.kernel_num, "kernel_mul": self.kernel_mul},
        )

    def __call__(self, batch: Batch, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [name for name in self.levels if name not in features]
        if missing:
            raise InputError(f"SDRM: no features captured for levels {missing}")
        return self.penalty(batch.labels, batch.true_labels, batch.poisoned, features)

    def penalty(
        self,
        labels: torch.Tensor,
        true_labels: torch.Tensor,
        poisoned: torch.Tensor,
        features: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        """The summed MMD for rows with training ``labels``, ``true_labels`` and ``poisoned`` flags."""
        poisoned = poisoned.bool()
        reference = features[self.levels[0]]
        total = reference.new_zeros((), dtype=torch.float32)
        if self.target_class is None:
            targets = [int(t) for t in torch.unique(labels[poisoned])]
        else:
            targets = [self.target_class]
        smallest = 2 if self.estimator == "unbiased" else 1  # the U-statistic needs two samples a group
        for target in targets:
            bad = poisoned & (labels == target)
            good = ~poisoned & (true_labels == target)
            if int(bad.sum()) < smallest or int(good.sum()) < smallest:
                continue
            for name in self.levels:
                level = features[name].float()
                total = total + mmd(level[good], level[bad], **self._kernel)
        return total
