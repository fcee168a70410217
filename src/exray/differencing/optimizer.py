"""Batched symmetric feature differencing: K independent mask problems optimised in one stacked pass.

Paper §3.1, spec §4.3–4.4. A *problem* is two sets of features a, b at the layer (labels A, B) and a
per-channel mask m = tanh(w)/2 + 1/2, initialised "all ones". Mixing swaps the masked channels:

* side ``a_to_b``: a with b's masked channels, ``m·b + (1−m)·a``, must be classified B;
* side ``b_to_a``: b with a's masked channels, ``m·a + (1−m)·b``, must be classified A;

while Σm is minimised. Every problem has its own random stream, pairing schedule, Adam state, epoch-0
baseline and best mask, so solving K problems together gives the same masks as solving them one by one;
the K problems only share the forward/backward pass through the suffix h, which is what makes it fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from exray.differencing.config import MaskConfig, Sides, check_sides
from exray.errors import InputError
from exray.models.layers import LayerCut
from exray.utils import torch_generator

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
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


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients (only the masks are optimised); restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def mix(mask: torch.Tensor, keep: torch.Tensor, take: torch.Tensor) -> torch.Tensor:
    """``mask·take + (1−mask)·keep``: ``keep``'s features with the masked channels taken from ``take``."""
    shape = (mask.shape[0], mask.shape[1], *([1] * (keep.ndim - 2)))
    return keep + mask.view(shape) * (take - keep)


def optimize_masks(
    cut: LayerCut, problems: list[MaskProblem], config: MaskConfig | None = None, *, progress: bool = False
) -> list[MaskResult]:
    """Solve all ``problems``: together, one suffix pass per step for all of them (``engine="batched"``),
    or one at a time by the unbatched official loop (``engine="reference"``)."""
    config = config or MaskConfig()
    if not problems:
        return []
    if config.engine == "reference":
        from exray.differencing.reference import reference_masks

        return reference_masks(cut, problems, config, progress=progress)
    return _Solver(cut, problems, config).run(progress)


@dataclass
class _Step:
    """Which rows one mini-batch step holds. The layout is the same every epoch (only the pairs drawn
    change), so it is built once: rows are (problem, position in that problem's epoch order)."""

    pid: torch.Tensor  # problem of each pair in the step
    pos: torch.Tensor  # position of the pair in its problem's epoch order
    sel1: torch.Tensor  # pairs that are mixed toward b (side a_to_b)
    sel2: torch.Tensor  # pairs that are mixed toward a (side b_to_a)
    slot: torch.Tensor  # (problem, side) index of every mixed row: 2·problem + side
    counts: torch.Tensor  # (K, 2) mixed rows per problem and side
    present: torch.Tensor  # (K,) bool: problems with a batch in this step
    finishing: torch.Tensor  # problems whose last batch of the epoch is this step


class _Solver:
    """State of K stacked problems: feature bank, mask logits, per-problem Adam moments and bookkeeping."""

    def __init__(self, cut: LayerCut, problems: list[MaskProblem], config: MaskConfig):
        self.cut, self.problems, self.config = cut, problems, config
        shapes = {tuple(p.a.shape[1:]) for p in problems}
        if len(shapes) != 1:
            raise InputError(f"all problems must come from one layer; got feature shapes {sorted(shapes)}")
        self.device = device = problems[0].a.device
        offsets_a, offsets_b, chunks, inputs = [], [], [], []
        total = 0
        for p in problems:
            offsets_a.append(total)
            offsets_b.append(total + len(p.a))
            total += len(p.a) + len(p.b)
            chunks += [p.a, p.b]
            if cut.needs_inputs:
                if p.inputs_a is None or p.inputs_b is None:
                    raise InputError("the hook backend needs the input images of every feature set")
                inputs += [p.inputs_a, p.inputs_b]
        self.bank = torch.cat(chunks).float()
        self.inputs = torch.cat(inputs) if inputs else None
        self.offsets_a = torch.tensor(offsets_a, device=device)
        self.offsets_b = torch.tensor(offsets_b, device=device)
        k, channels = len(problems), self.bank.shape[1]
        self.labels_a = torch.tensor([p.label_a for p in problems], device=device)
        self.labels_b = torch.tensor([p.label_b for p in problems], device=device)
        self.side1 = torch.tensor([p.sides in ("both", "a_to_b") for p in problems], device=device)
        self.side2 = torch.tensor([p.sides in ("both", "b_to_a") for p in problems], device=device)
        self.n_pairs = [p.pairs_per_epoch for p in problems]
        self.weights = torch.full((k, channels), config.init_logit, device=device, requires_grad=True)
        self.adam_m = torch.zeros(k, channels, device=device)
        self.adam_v = torch.zeros(k, channels, device=device)
        self.adam_t = torch.zeros(k, 1, device=device)
        self.base_acc = torch.ones(k, 2, device=device)
        self.best_size = torch.full((k,), math.inf, device=device)
        self.best_mask = torch.zeros(k, channels, device=device)
        self.best_epoch = torch.full((k,), -1, dtype=torch.long, device=device)
        self.since_best = torch.zeros(k, dtype=torch.long, device=device)
        self.epochs_run = torch.zeros(k, dtype=torch.long, device=device)
        self.history = torch.zeros(k, config.epochs, device=device)
        self.active = torch.ones(k, dtype=torch.bool, device=device)
        self.generators = [torch_generator(p.seed) for p in problems]
        self.steps = self._layout()

    def masks(self) -> torch.Tensor:
        return torch.tanh(self.weights) / 2 + 0.5

    def _layout(self) -> list[_Step]:
        """The mini-batch layout of an epoch for the active problems."""
        bs, k_total, device = self.config.batch_size, len(self.problems), self.device
        active = [k for k in range(k_total) if self.active[k]]
        n_batches = {k: math.ceil(self.n_pairs[k] / bs) for k in active}
        steps = []
        for step in range(max(n_batches.values(), default=0)):
            pid, pos = [], []
            for k in active:
                if step < n_batches[k]:
                    rows = range(step * bs, min((step + 1) * bs, self.n_pairs[k]))
                    pid += [k] * len(rows)
                    pos += list(rows)
            pid_t = torch.tensor(pid, device=device)
            sel1 = self.side1[pid_t].nonzero().squeeze(1)
            sel2 = self.side2[pid_t].nonzero().squeeze(1)
            slot = torch.cat([pid_t[sel1] * 2, pid_t[sel2] * 2 + 1])
            counts = torch.zeros(k_total * 2, device=device).index_add_(
                0, slot, torch.ones(len(slot), device=device)
            )
            present = torch.zeros(k_total, dtype=torch.bool, device=device)
            present[pid_t] = True
            finishing = torch.tensor(
                [k for k in active if n_batches[k] == step + 1], dtype=torch.long, device=device
            )
            steps.append(
                _Step(
                    pid_t,
                    torch.tensor(pos, device=device),
                    sel1,
                    sel2,
                    slot,
                    counts.view(k_total, 2),
                    present,
                    finishing,
                )
            )
        return steps

    def run(self, progress: bool) -> list[MaskResult]:
        bar = tqdm(
            range(self.config.epochs),
            desc=f"masks ×{len(self.problems)}",
            disable=not progress,
            leave=False,
            mininterval=0.5,
        )
        with frozen(self.cut.model):
            for epoch in bar:
                still_active = self._epoch(epoch)
                if not still_active:
                    break
                bar.set_postfix(active=still_active, refresh=False)
            return self._results()

    def _epoch(self, epoch: int) -> int:
        """One epoch for every active problem; returns how many problems remain active."""
        k_total, n_max = len(self.problems), max(self.n_pairs)
        order_a = torch.zeros(k_total, n_max, dtype=torch.long)
        order_b = torch.zeros(k_total, n_max, dtype=torch.long)
        for k in self.active.nonzero().flatten().tolist():
            ia, ib = self.problems[k].epoch_pairs(self.generators[k])
            order_a[k, : len(ia)], order_b[k, : len(ib)] = ia, ib
        order_a, order_b = order_a.to(self.device), order_b.to(self.device)
        last_acc = torch.ones(k_total, 2, device=self.device)
        last_mask = torch.zeros_like(self.best_mask)
        last_size = torch.zeros(k_total, device=self.device)
        for step in self.steps:
            ra = self.offsets_a[step.pid] + order_a[step.pid, step.pos]
            rb = self.offsets_b[step.pid] + order_b[step.pid, step.pos]
            acc, masks = self._step(step, ra, rb, update=epoch > 0)
            done = step.finishing
            last_acc[done], last_mask[done], last_size[done] = acc[done], masks[done], masks[done].sum(1)
        self._end_epoch(epoch, last_acc, last_mask, last_size)
        return int(self.active.sum())

    def _end_epoch(self, epoch: int, acc: torch.Tensor, mask: torch.Tensor, size: torch.Tensor) -> None:
        """Epoch-0 baselines, best-mask bookkeeping and early stopping, from each last mini-batch."""
        active = self.active
        if epoch == 0:
            self.base_acc = acc.clone()
        feasible = (acc >= self.base_acc - 1e-6).all(1)
        better = active & feasible & (size < self.best_size)
        improved = better & (self.best_size - size > self.config.min_improvement)
        self.best_mask = torch.where(better[:, None], mask, self.best_mask)
        self.best_size = torch.where(better, size, self.best_size)
        self.best_epoch = torch.where(better, epoch, self.best_epoch)
        self.since_best = torch.where(improved, 0, self.since_best + active.long())
        self.history[active, epoch] = size[active]
        self.epochs_run[active] = epoch + 1
        if self.config.patience is not None:
            stop = active & (self.since_best >= self.config.patience) & decided(self.best_mask)
            if stop.any():
                self.active = active & ~stop
                self.steps = self._layout()

    def _step(
        self, step: _Step, ra: torch.Tensor, rb: torch.Tensor, update: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mini-batch for every present problem: a forward (and, after epoch 0, an Adam step).

        Returns the (K, 2) flip accuracies of this batch (1 for absent problems and disabled sides) and
        the (K, C) masks that were evaluated.
        """
        k_total = len(self.problems)
        with torch.set_grad_enabled(update):
            masks = self.masks()
            row_mask = masks[step.pid]
            feats_a, feats_b = self.bank[ra], self.bank[rb]
            s1, s2 = step.sel1, step.sel2
            mixed = torch.cat(
                [mix(row_mask[s1], feats_a[s1], feats_b[s1]), mix(row_mask[s2], feats_b[s2], feats_a[s2])]
            )
            inputs = None if self.inputs is None else self.inputs[torch.cat([ra[s1], rb[s2]])]
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.config.precision == "bf16"):
                logits = self.cut.suffix(mixed, inputs).float()
            pid1, pid2 = step.pid[s1], step.pid[s2]
            expect = torch.cat([self.labels_b[pid1], self.labels_a[pid2]])
            other = torch.cat([self.labels_a[pid1], self.labels_b[pid2]])
            correct = (logits.argmax(1) == expect).float()
            hits = (
                torch.zeros(k_total * 2, device=self.device)
                .index_add_(0, step.slot, correct)
                .view(k_total, 2)
            )
            acc = torch.where(step.counts > 0, hits / step.counts.clamp(min=1), torch.ones_like(hits))
            if self.config.loss == "official":
                margin = logits.gather(1, expect[:, None]) - logits.gather(1, other[:, None])
                per_side = torch.zeros(k_total * 2, device=self.device).index_add(
                    0, step.slot, margin.squeeze(1)
                )
                barrier = -per_side.view(k_total, 2)
                violated = acc < self.base_acc - 1e-6
            else:
                ce = F.cross_entropy(logits, expect, reduction="none")
                per_side = torch.zeros(k_total * 2, device=self.device).index_add(0, step.slot, ce)
                barrier = per_side.view(k_total, 2) / step.counts.clamp(min=1)
                violated = (barrier.detach() > self.config.alpha) & (step.counts > 0)
            per_problem = masks.sum(1) + self.config.barrier_weight * (violated * barrier).sum(1)
            if update:
                (grad,) = torch.autograd.grad((per_problem * step.present).sum(), self.weights)
                self._adam(grad, step.present[:, None])
        return acc.detach(), masks.detach()

    def _adam(self, grad: torch.Tensor, present: torch.Tensor) -> None:
        """torch.optim.Adam's update, applied only to the problems that had a batch in this step."""
        b1, b2 = _ADAM_BETAS
        with torch.no_grad():
            self.adam_t += present
            self.adam_m = torch.where(present, b1 * self.adam_m + (1 - b1) * grad, self.adam_m)
            self.adam_v = torch.where(present, b2 * self.adam_v + (1 - b2) * grad * grad, self.adam_v)
            t = self.adam_t.clamp(min=1)
            denom = self.adam_v.sqrt() / (1 - b2**t).sqrt() + _ADAM_EPS
            step = (self.config.lr / (1 - b1**t)) * self.adam_m / denom
            self.weights -= torch.where(present, step, torch.zeros_like(step))

    def _results(self) -> list[MaskResult]:
        final = self.masks().detach()
        results = []
        for k, problem in enumerate(self.problems):
            feasible = math.isfinite(self.best_size[k].item())
            values = self.best_mask[k] if feasible else final[k]
            epochs = int(self.epochs_run[k])
            history, best_epoch = self.history[k, :epochs], int(self.best_epoch[k])
            results.append(make_result(self.cut, problem, values, feasible, history, best_epoch))
        return results


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
