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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from exray.differencing.config import AUTOCAST_DTYPES, MaskConfig
from exray.differencing.problem import MaskProblem, MaskResult, decided, make_result, mix
from exray.differencing.reference import reference_masks
from exray.errors import InputError
from exray.models.layers import LayerCut
from exray.models.runtime import frozen
from exray.optim import StackedAdam
from exray.utils import torch_generator

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def optimize_masks(
    cut: LayerCut, problems: list[MaskProblem], config: MaskConfig | None = None, *, progress: bool = False
) -> list[MaskResult]:
    """Solve all ``problems``: together, one suffix pass per step for all of them (``engine="batched"``),
    or one at a time by the unbatched official loop (``engine="reference"``)."""
    config = config or MaskConfig()
    if not problems:
        return []
    if config.engine == "reference":
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
        self.adam = StackedAdam({"weights": self.weights}, config.lr, _ADAM_BETAS, _ADAM_EPS)
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
            dtype = AUTOCAST_DTYPES.get(self.config.precision)
            with torch.autocast(self.device.type, dtype or torch.bfloat16, enabled=dtype is not None):
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
                self.adam.step({"weights": grad}, step.present)
        return acc.detach(), masks.detach()

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
