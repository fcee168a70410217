"""A mask problem and its result (paper §3.1, spec §4.3): what the batched optimiser (optimizer.py) and the
unbatched official loop (reference.py) both solve and return."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from exray.differencing.config import Sides, check_sides
from exray.errors import InputError
from exray.models.layers import LayerCut
from exray.utils import torch_generator

#: Flip accuracies are measured on at most this many evaluation pairs.
_EVAL_PAIR_CAP = 4096

#: Early stopping waits until the best mask is decided: at least this fraction of its channels lie within
#: ``DECIDED_MARGIN`` of 0 or 1. The size term first shrinks every channel alike (a uniform plateau where
#: no smaller feasible mask is found for many epochs); only the barrier then tells the channels apart.
DECIDED_CHANNELS = 0.95
DECIDED_MARGIN = 0.1


def decided(masks: torch.Tensor) -> torch.Tensor:
    """(K,) bool: which of the (K, C) masks are nearly binary (see :data:`DECIDED_CHANNELS`)."""
    near = (masks < DECIDED_MARGIN) | (masks > 1 - DECIDED_MARGIN)
    return near.float().mean(1) >= DECIDED_CHANNELS


@dataclass
class MaskProblem:
    """One mask to find: features ``a`` (class ``label_a``) against features ``b`` (class ``label_b``).

    ``paired``: row j of a goes with row j of b (V vs V+t); otherwise pairs are drawn at random each epoch
    and the larger set is subsampled without replacement to the smaller one's size. ``inputs_a``/``inputs_b``
    are the images the features came from; only the hook backend of :class:`LayerCut` needs them.
    """

    a: torch.Tensor
    b: torch.Tensor
    label_a: int
    label_b: int
    sides: Sides = "both"
    paired: bool = False
    seed: int = 0
    inputs_a: torch.Tensor | None = None
    inputs_b: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_sides(self.sides)
        for name in ("a", "b"):
            x = getattr(self, name)
            if x.ndim < 2 or len(x) == 0:
                raise InputError(
                    f"feature set {name!r} must be non-empty with shape (N, C, ...), got {tuple(x.shape)}"
                )
            if not torch.isfinite(x).all():
                raise InputError(f"feature set {name!r} contains NaN or Inf")
        if self.a.shape[1:] != self.b.shape[1:]:
            raise InputError(f"feature shapes differ: {tuple(self.a.shape[1:])} vs {tuple(self.b.shape[1:])}")
        if self.paired and len(self.a) != len(self.b):
            raise InputError(f"paired sets must have equal sizes, got {len(self.a)} and {len(self.b)}")
        if self.label_a == self.label_b:
            raise InputError(f"a mask needs two different classes, got {self.label_a} twice")

    @property
    def pairs_per_epoch(self) -> int:
        return len(self.a) if self.paired else min(len(self.a), len(self.b))

    def epoch_pairs(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices (into a and into b) of this epoch's pairs, in batch order."""
        if self.paired:
            perm = torch.randperm(len(self.a), generator=gen)
            return perm, perm
        n = self.pairs_per_epoch
        return torch.randperm(len(self.a), generator=gen)[:n], torch.randperm(len(self.b), generator=gen)[:n]

    def eval_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic pairs on which flip accuracies are reported: all of them (capped) if unpaired."""
        if self.paired:
            idx = torch.arange(len(self.a))
            return idx, idx
        ia, ib = torch.meshgrid(torch.arange(len(self.a)), torch.arange(len(self.b)), indexing="ij")
        ia, ib = ia.flatten(), ib.flatten()
        if len(ia) > _EVAL_PAIR_CAP:
            keep = torch.randperm(len(ia), generator=torch_generator(self.seed))[:_EVAL_PAIR_CAP]
            ia, ib = ia[keep], ib[keep]
        return ia, ib


@dataclass(frozen=True)
class MaskResult:
    """A solved mask problem.

    ``values``: per-channel mask in [0, 1]; ``size`` = Σ values; ``flip_accuracy`` = (fraction of a-rows
    flipped to B with b's masked channels, fraction of b-rows flipped to A with a's masked channels), on
    all evaluation pairs. ``feasible`` is False when no epoch met the flip constraints, in which case
    ``values`` is the final mask. ``history`` holds Σm per epoch. ``best_epoch``: the epoch whose mask
    is ``values`` (−1 when infeasible or unknown); epoch 0 evaluates the initial mask (every channel ≈ 1)
    before any update. See :attr:`degenerate`.
    """

    values: torch.Tensor
    size: float
    flip_accuracy: tuple[float, float]
    feasible: bool
    epochs_run: int
    label_a: int
    label_b: int
    sides: Sides
    seed: int
    history: torch.Tensor = field(repr=False)
    best_epoch: int = -1

    @property
    def degenerate(self) -> bool:
        """No feasible mask smaller than the initial all-ones one: infeasible, kept from epoch 0 (before
        any update), or every channel still above 0.9 (not one channel could be dropped while both flips
        held). Such a mask contains any other, so it says nothing about which features differ."""
        return not self.feasible or self.best_epoch == 0 or bool((self.values > 0.9).all())

    @property
    def coverage(self) -> float:
        """|M| / C: the share of the layer's channels the mask covers."""
        return self.size / max(self.values.numel(), 1)

    def to_dict(self) -> dict:
        return {
            "values": [round(float(v), 6) for v in self.values],
            "size": self.size,
            "flip_accuracy": list(self.flip_accuracy),
            "feasible": self.feasible,
            "epochs_run": self.epochs_run,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "sides": self.sides,
            "seed": self.seed,
            "best_epoch": self.best_epoch,
            "degenerate": self.degenerate,
            "coverage": self.coverage,
        }


def mix(mask: torch.Tensor, keep: torch.Tensor, take: torch.Tensor) -> torch.Tensor:
    """``mask·take + (1−mask)·keep``: ``keep``'s features with the masked channels taken from ``take``."""
    shape = (mask.shape[0], mask.shape[1], *([1] * (keep.ndim - 2)))
    return keep + mask.view(shape) * (take - keep)


def make_result(
    cut: LayerCut,
    problem: MaskProblem,
    values: torch.Tensor,
    feasible: bool,
    history: torch.Tensor,
    best_epoch: int = -1,
) -> MaskResult:
    """A :class:`MaskResult` for ``values``, with flip accuracies on all of the problem's evaluation pairs."""
    ia, ib = problem.eval_pairs()
    a, b = problem.a[ia], problem.b[ib]
    mask = values.to(a.device).expand(len(ia), -1)
    in_a = None if problem.inputs_a is None else problem.inputs_a[ia]
    in_b = None if problem.inputs_b is None else problem.inputs_b[ib]
    to_b = cut.logits(mix(mask, a, b), in_a).argmax(1) == problem.label_b
    to_a = cut.logits(mix(mask, b, a), in_b).argmax(1) == problem.label_a
    return MaskResult(
        values=values.detach().cpu().clone(),
        size=float(values.sum()),
        flip_accuracy=(float(to_b.float().mean()), float(to_a.float().mean())),
        feasible=feasible,
        epochs_run=len(history),
        label_a=problem.label_a,
        label_b=problem.label_b,
        sides=problem.sides,
        seed=problem.seed,
        history=history.detach().cpu().clone(),
        best_epoch=best_epoch,
    )
